// Runway is the project-management SaaS of keyledger's product story: a
// small HTTP API whose routes are protected by keyledger keys through the
// client middleware, validating over HTTP or, with --embedded-validator,
// in-process from its own projection of the ledger.
//
//	go run ./examples/runway --keyledger http://127.0.0.1:8080 --addr 127.0.0.1:8081
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/embedded"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "runway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("runway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyledger := fs.String("keyledger", "http://127.0.0.1:8080", "keyledger's HTTP API (the admin key comes from KEYLEDGER_ADMIN_KEY)")
	addr := fs.String("addr", "127.0.0.1:8081", "address Runway serves on")
	useEmbedded := fs.Bool("embedded-validator", false, "validate keys in-process from a local projection of the ledger instead of over HTTP")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "with --embedded-validator: keyledger's NATS server (user validator, password from KEYLEDGER_NATS_VALIDATOR_PASSWORD)")
	validatorData := fs.String("validator-data", "", "with --embedded-validator: folder of the local projection (empty: in memory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	var v client.Validator
	if *useEmbedded {
		u, err := url.Parse(*natsURL)
		if err != nil {
			return fmt.Errorf("--nats-url: %w", err)
		}
		if u.User == nil {
			u.User = url.UserPassword("validator", os.Getenv("KEYLEDGER_NATS_VALIDATOR_PASSWORD"))
		}
		openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ev, err := embedded.Open(openCtx, embedded.Config{NATSURL: u.String(), Dir: *validatorData, Log: log})
		cancel()
		if err != nil {
			return err
		}
		defer ev.Close()
		v = ev
	} else {
		c, err := client.New(*keyledger, os.Getenv("KEYLEDGER_ADMIN_KEY"), client.WithRetries(1, 50*time.Millisecond))
		if err != nil {
			return err
		}
		v = c
	}

	srv := &http.Server{
		Handler:           newApp(client.NewMiddleware(v, log)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mode := "over HTTP at " + *keyledger
	if *useEmbedded {
		mode = "in-process, following " + *natsURL
	}
	log.Info("runway serving", "addr", ln.Addr().String(), "validation", mode)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
