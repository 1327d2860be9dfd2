package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "keyledger: second signal, exiting now")
		os.Exit(130)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "keyledger:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a status and no further message.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

var errUsage = errors.New("usage")

const usage = `keyledger: the API key ledger

Usage:
  keyledger serve [flags]                   run the service
  keyledger projections rebuild [flags]     rebuild the projection from the ledger (service stopped)
  keyledger keys create --org ORG --name NAME --permissions a,b [--user USER] [--expires-at RFC3339]
  keyledger keys list --org ORG [--user USER] [--status active|revoked|expired] [--limit N] [--after ID]
  keyledger keys get ID
  keyledger keys revoke ID [--reason requested|leaked|rotated]
  keyledger validate VALUE
  keyledger permissions get
  keyledger permissions set a,b,c
  keyledger members remove --org ORG --user USER
  keyledger events list [--type T,...] [--org ORG] [--after CURSOR] [--limit N]
  keyledger events tail [--type T,...] [--org ORG] [--after CURSOR]   follow the feed live
  keyledger webhooks create --url URL --events T,...   a webhook endpoint; prints its secret once
  keyledger webhooks list | get ID | update ID [--url U] [--events T,...] | enable ID | disable ID | delete ID
  keyledger webhooks rotate-secret ID | attempts ID [--limit N] | recover ID --since T [--until T]
  keyledger audit export --out FILE            the ledger and its signed checkpoints, for offline verification
  keyledger audit verify --public-key KEY [--file FILE]   recompute and check everything (exit 1 on any finding)
  keyledger bench [--quick] [--json] [--only SCENARIOS]   measure against the references

Run 'keyledger COMMAND -h' for the flags of a command. The commands that talk
to a running keyledger read KEYLEDGER_URL (default http://127.0.0.1:8080) and
KEYLEDGER_ADMIN_KEY.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		m := NewMain(stdout, stderr)
		if err := m.ParseFlags(args[1:]); err != nil {
			return err
		}
		for {
			err := m.Run(ctx)
			if !errors.Is(err, errRestart) {
				return err
			}
			if ctx.Err() != nil {
				return nil // asked to stop meanwhile
			}
			next := NewMain(stdout, stderr)
			next.Config, next.log = m.Config, m.log
			m = next
		}
	case "projections":
		if len(args) < 2 || args[1] != "rebuild" {
			fmt.Fprint(stderr, usage)
			return errUsage
		}
		m := NewMain(stdout, stderr)
		if err := m.ParseFlags(args[2:]); err != nil {
			return err
		}
		return m.Rebuild(ctx)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr)
	case "keys", "validate", "permissions", "members", "events", "webhooks":
		return runCLI(ctx, args, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return errUsage
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
