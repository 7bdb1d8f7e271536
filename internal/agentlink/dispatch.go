package agentlink

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/target"
)

// pending is a job sent to an agent whose Check waits for the result.
// Whoever removes it from Hub.jobs (under Hub.mu) sends the one reply.
type pending struct {
	conn *conn
	done chan reply // buffered, one reply
}

type reply struct {
	res *Result
	err string // the job failed without a result
}

// defaultDeadline applies to a claim without a lease (not from ClaimDue).
const defaultDeadline = 2 * time.Minute

// JobID names the check slot a claim stands for: "<monitor ID>-<slot unix
// ms>". A slot's result is ingested at most once.
func JobID(c store.Claim) string {
	return fmt.Sprintf("%d-%d", c.Monitor.ID, c.Slot.UnixMilli())
}

// Check sends the claimed check to a connected agent of the monitor's team
// and pool and assesses its observation. Without an agent, or when the
// agent disconnects, refuses or does not answer in time, the outcome is
// UNKNOWN without a chain (the state machine retries once before it
// counts).
func (h *Hub) Check(ctx context.Context, cl store.Claim) monitor.Outcome {
	m := cl.Monitor
	start := h.now()
	deadline := cl.Lease
	if deadline.IsZero() {
		deadline = start.Add(defaultDeadline)
	}
	// Give up a little before the lease ends, so the outcome is still
	// recorded under it.
	wait := deadline.Sub(start)
	wait -= min(5*time.Second, wait/10)
	if wait <= 0 {
		return monitor.Unknown(m, "lease ended before the job was sent", start)
	}
	t, err := monitor.ParseTarget(m.Target, m.Protocol)
	if err != nil {
		return monitor.Unknown(m, err.Error(), start)
	}

	id := JobID(cl)
	p := &pending{done: make(chan reply, 1)}
	h.mu.Lock()
	if _, dup := h.jobs[id]; dup {
		h.mu.Unlock()
		return monitor.Unknown(m, fmt.Sprintf("job %s is already running", id), start)
	}
	p.conn = h.pickLocked(m.TeamID, m.AgentPool, h.silent[m.ID])
	if p.conn == nil {
		off, isOff := h.offlineLocked(m.TeamID, m.AgentPool)
		h.mu.Unlock()
		if isOff {
			return monitor.Unknown(m, offlineMessage(off), start)
		}
		return monitor.Unknown(m, fmt.Sprintf("no agent of pool %s connected", m.AgentPool), start)
	}
	h.jobs[id] = p
	p.conn.outstanding++
	h.mu.Unlock()

	job := Job{
		JobID:    id,
		Target:   m.Target,
		Protocol: m.Protocol,
		SNI:      m.SNI,
		Timeout:  min(h.cfg.ProbeTimeout, wait),
		Deadline: deadline,
		// The agent fetches OCSP/CRL/AIA when the monitor says only it
		// can reach the responders.
		FetchRevocation: m.RevocationFrom == "agent",
	}
	if err := p.conn.send(ctx, TypeJob, job); err != nil {
		p.conn.log.Info("sending job failed", "job", id, "err", err)
		if h.take(id, p) {
			return monitor.Unknown(m, "agent disconnected", start)
		}
		// The connection's end failed the job already.
		return h.outcome(ctx, m, t, <-p.done, start)
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var r reply
	select {
	case r = <-p.done:
	case <-ctx.Done():
		r = h.giveUp(id, p, "check canceled")
	case <-timer.C:
		r = h.giveUp(id, p, "agent did not answer before the deadline")
	}
	h.mu.Lock()
	if r.res == nil && r.err == "agent did not answer before the deadline" {
		if len(h.silent) > 100_000 {
			clear(h.silent) // bounded; only a hint for the next pick
		}
		h.silent[m.ID] = p.conn.agent.ID
	} else {
		delete(h.silent, m.ID)
	}
	h.mu.Unlock()
	return h.outcome(ctx, m, t, r, start)
}

// giveUp withdraws a job; a reply that won the race is used instead.
func (h *Hub) giveUp(id string, p *pending, why string) reply {
	h.mu.Lock()
	mine := h.jobs[id] == p
	if mine {
		h.takeLocked(id)
		h.expired[id] = h.now().Add(expiredMemory)
	}
	h.mu.Unlock()
	if mine {
		return reply{err: why}
	}
	return <-p.done
}

// take removes job id if it is still p; the caller then owns the reply.
func (h *Hub) take(id string, p *pending) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.jobs[id] != p {
		return false
	}
	h.takeLocked(id)
	return true
}

func (h *Hub) takeLocked(id string) {
	p := h.jobs[id]
	delete(h.jobs, id)
	if p != nil && p.conn.outstanding > 0 {
		p.conn.outstanding--
	}
}

// outcome turns an agent's reply into the check's outcome.
func (h *Hub) outcome(ctx context.Context, m store.Monitor, t target.Target, r reply, start time.Time) (o monitor.Outcome) {
	switch {
	case r.err != "":
		return monitor.Unknown(m, r.err, start)
	case r.res == nil:
		return monitor.Unknown(m, "agent sent no result", start)
	case r.res.Refused != "":
		return monitor.Unknown(m, "agent refused the job: "+clipText(r.res.Refused, 500), start)
	case r.res.Observation == nil:
		return monitor.Unknown(m, "agent sent no observation", start)
	case len(r.res.Observation.Chain) > probe.MaxChainCerts:
		return monitor.Unknown(m, fmt.Sprintf("agent sent %d certificates, more than %d", len(r.res.Observation.Chain), probe.MaxChainCerts), start)
	}
	obs := r.res.Observation
	// The server's reading of the target is the truth, whatever the agent
	// says it probed; Parsed never crosses the wire.
	obs.Target, obs.Parsed = t, nil
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("assessing an agent's observation panicked", "monitor", m.ID, "panic", p, "stack", string(debug.Stack()))
			o = monitor.Unknown(m, "internal error assessing the agent's observation", start)
		}
	}()
	o = h.cfg.Assess(ctx, m, obs)
	if o.Result == nil {
		return monitor.Unknown(m, "internal error: no assessment", start)
	}
	return o
}

// pickLocked chooses the connection with the fewest outstanding jobs among
// the team's pool, rotating among equals, and not agent avoid (which let
// this monitor's last job lapse) while another is there; h.mu is held.
func (h *Hub) pickLocked(team int64, pool string, avoid string) *conn {
	list := h.byPool[poolKey{team, pool}]
	if len(list) == 0 {
		return nil
	}
	h.rr++
	var best *conn
	for i := range list {
		c := list[(int(h.rr%uint64(len(list)))+i)%len(list)]
		if c.revoking {
			continue
		}
		if best != nil && best.agent.ID != avoid && c.agent.ID == avoid {
			continue
		}
		if best == nil || best.agent.ID == avoid && c.agent.ID != avoid || c.outstanding < best.outstanding {
			best = c
		}
	}
	return best
}

// PoolsFunc returns the pools with at least one agent connected here, and
// the pools (of any team) none of whose agents was seen within
// OfflineGrace at the last sweep, whose checks Check reports as UNKNOWN
// "agent offline" (every replica claims those; a pool whose agent is
// connected to another replica is not offline, since that replica keeps
// its last_seen fresh). For monitor.SchedulerConfig.PoolsFunc (pass the
// method value h.PoolsFunc). Pools are names across teams; Check still
// only uses the monitor's own team's agents.
func (h *Hub) PoolsFunc() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	pools := make([]string, 0, len(h.byPool)+len(h.offlineNames))
	for k := range h.byPool {
		pools = append(pools, k.pool)
	}
	pools = append(pools, h.offlineNames...)
	slices.Sort(pools)
	return slices.Compact(pools)
}
