package eventstore

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// Dir is the data folder; JetStream keeps its files in Dir/jetstream.
	Dir string
	// Listen is host:port for NATS clients, or "" to accept only the
	// in-process connection.
	Listen string
}

// StartEmbedded starts a JetStream server in this process. Every write is
// fsynced before it is acknowledged (sync_interval: always).
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "keyledger",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.Dir, "jetstream"),
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("eventstore: embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("eventstore: embedded nats did not start")
	}
	log.Info("embedded nats started", "store", opts.StoreDir, "listen", cfg.Listen)
	return ns, nil
}

// ConnectEmbedded opens the in-process connection to an embedded server.
func ConnectEmbedded(ns *server.Server) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("keyledger"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("eventstore: connect embedded: %w", err)
	}
	return nc, nil
}

// Connect opens a connection to an existing NATS server or cluster
// (comma-separated URLs). It keeps reconnecting for ever: commands fail fast
// while it is away, and resume when it returns.
func Connect(urls string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(urls, nats.Name("keyledger"), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, fmt.Errorf("eventstore: connect %s: %w", urls, err)
	}
	return nc, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("eventstore: nats listen address %q: %w", addr, err)
	}
	var port int
	if _, err := fmt.Sscanf(portStr, "%d", &port); err != nil {
		return "", 0, fmt.Errorf("eventstore: nats listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}
