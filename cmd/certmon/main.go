// Command certmon watches the TLS certificates an organisation serves.
// This package only parses flags and wires components together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries a specific exit code out of a cobra command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// usageExit is the exit code for bad flags or arguments: UNKNOWN (3) for
// check, which follows the Nagios plugin convention, 2 elsewhere.
func usageExit(cmd *cobra.Command) int {
	if cmd != nil && cmd.Name() == "check" {
		return 3
	}
	return 2
}

// run is main without the process: testable end to end.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "certmon",
		Short:         "Watch the TLS certificates you serve",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newCheckCommand(stdout, stderr), newServerCommand(stdout, stderr))
	root.AddCommand(newAgentCommand(stdout, stderr))

	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "certmon:", ee.err)
		}
		return ee.code
	}
	// Anything else is a flag or argument error from cobra.
	fmt.Fprintln(stderr, "certmon:", err)
	if cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return usageExit(cmd)
}
