package main

import (
	"slices"
	"strings"
	"testing"
)

func TestInstalledServiceKeepsTheOtherFlags(t *testing.T) {
	got := withoutServiceFlag([]string{"--env-file", "/etc/certmon/agent.env", "--service", "install", "--allow-networks=10.0.0.0/8", "--service=install"})
	want := []string{"--env-file", "/etc/certmon/agent.env", "--allow-networks=10.0.0.0/8"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestAgentServiceBadAction(t *testing.T) {
	code, _, stderr := runCLI(t, "agent", "--service", "explode")
	if code != 2 || !strings.Contains(stderr, `--service "explode"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
