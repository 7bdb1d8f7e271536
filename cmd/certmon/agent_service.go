package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/kardianos/service"
)

// The agent as an operating-system service: `certmon agent --service
// install` registers it (Windows service, systemd unit or launchd job, with
// the same flags minus --service), and on Windows the service control
// manager starts it through service.Run.

// agentProgram adapts the agent's run function to kardianos/service.
type agentProgram struct {
	run    func(ctx context.Context) error
	cancel context.CancelFunc
	done   chan error
}

func (p *agentProgram) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- p.run(ctx) }()
	return nil
}

func (p *agentProgram) Stop(service.Service) error {
	p.cancel()
	return <-p.done
}

func newAgentService(prg *agentProgram, args []string) (service.Service, error) {
	return service.New(prg, &service.Config{
		Name:        "certmon-agent",
		DisplayName: "certmon agent",
		Description: "Probes TLS certificates in this network for a certmon server.",
		Arguments:   append([]string{"agent"}, withoutServiceFlag(args)...),
	})
}

// withoutServiceFlag drops --service and its value from the arguments an
// installed service will run with.
func withoutServiceFlag(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--service":
			i++
		case strings.HasPrefix(args[i], "--service="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

// controlAgentService runs a --service action.
func controlAgentService(action string, args []string) error {
	if !slices.Contains(service.ControlAction[:], action) {
		return fmt.Errorf("--service %q: want one of %s", action, strings.Join(service.ControlAction[:], ", "))
	}
	svc, err := newAgentService(&agentProgram{}, args)
	if err != nil {
		return err
	}
	if err := service.Control(svc, action); err != nil {
		return fmt.Errorf("service %s: %w", action, err)
	}
	return nil
}

// underServiceManager reports whether Windows' service control manager
// started this process; elsewhere signals already stop the agent cleanly.
func underServiceManager() bool {
	return runtime.GOOS == "windows" && !service.Interactive()
}

// runAsService hands run to the service manager and returns when it stops
// the service.
func runAsService(run func(ctx context.Context) error, args []string) error {
	prg := &agentProgram{run: run}
	svc, err := newAgentService(prg, args)
	if err != nil {
		return err
	}
	return svc.Run()
}
