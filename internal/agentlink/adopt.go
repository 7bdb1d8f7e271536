package agentlink

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// A result can outlive the claim it answers: the replica that sent the job
// was killed or restarted while the agent held the result in its spool.
// When the agent resends it, any replica may adopt it, if its job still
// names the monitor's current, unrecorded slot: the store fences the write
// by that slot alone, so the check is recorded once, whoever records it.

// parseJobID reads "<monitorID>-<slot unix ms>".
func parseJobID(id string) (int64, time.Time, bool) {
	m, s, ok := strings.Cut(id, "-")
	if !ok {
		return 0, time.Time{}, false
	}
	mid, err1 := strconv.ParseInt(m, 10, 64)
	slot, err2 := strconv.ParseInt(s, 10, 64)
	if err1 != nil || err2 != nil || mid <= 0 {
		return 0, time.Time{}, false
	}
	return mid, time.UnixMilli(slot).UTC(), true
}

// adopt records res for the slot its job ID names, returning why it was
// not used ("" when recorded).
func (c *conn) adopt(res *Result) string {
	st := c.hub.store
	mid, slot, ok := parseJobID(res.JobID)
	if !ok {
		return "unknown job"
	}
	ctx, cancel := context.WithTimeout(c.hub.ctx, 10*time.Second)
	defer cancel()
	m, err := st.GetMonitor(ctx, c.agent.TeamID, mid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "unknown job"
	case err != nil:
		c.log.Warn("adopting a result: loading its monitor", "job", res.JobID, "err", err)
		return "unknown job"
	case m.AgentPool != c.agent.Pool:
		return "job is not for this agent's pool"
	case !m.State.NextCheckAt.Equal(slot) || m.Paused:
		return "unknown job"
	}
	// Owner "" fences the write by the slot alone.
	claims := []store.Claim{{Monitor: m.Monitor, State: m.State, Slot: slot}}
	if err := st.LoadPrevious(ctx, claims); err != nil {
		return "unknown job"
	}
	claim := claims[0]
	var o monitor.Outcome
	switch {
	case res.Refused != "":
		o = monitor.Unknown(m.Monitor, "agent refused the job: "+clipText(res.Refused, 500), time.Now().UTC())
	case res.Observation == nil:
		return "result has no observation"
	default:
		o = c.hub.cfg.Assess(ctx, m.Monitor, res.Observation)
	}
	sched, err := monitor.ParseSchedule(m.Schedule)
	if err != nil {
		return "unknown job"
	}
	lost, err := st.RecordChecks(ctx, []store.CheckRecord{monitor.Transition(claim, o, sched, c.hub.cfg.RetryDelay, c.hub.cfg.Alerts)})
	if err != nil {
		c.log.Warn("adopting a result: recording it", "job", res.JobID, "err", err)
		return "unknown job"
	}
	if len(lost) > 0 {
		return "slot already recorded"
	}
	c.log.Info("adopted a result whose claim was lost", "job", res.JobID, "monitor", mid)
	return ""
}
