package eventstore

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/keyledger/keyledger/schemas"
)

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// Dir is the data folder; JetStream keeps its files in Dir/jetstream.
	Dir string
	// Listen is host:port for NATS clients, or "" to accept only the
	// in-process connection.
	Listen string
	// ValidatorPassword is the password of the NATS user "validator", the
	// only user a client connecting on Listen can be: it may follow the
	// ledger stream and report last-used times, and nothing else (it cannot
	// append to the ledger). Required when Listen is set.
	ValidatorPassword string
	// Stream is the ledger stream the validator user may read; default
	// schemas.DefaultStreamName.
	Stream string
	// SubscriberPassword, when set (at least 24 characters), enables the
	// read-only NATS user "subscriber" for security teams: it may subscribe
	// to the public subjects (keyledger.public.>) and nothing else: it
	// publishes nothing, cannot use the JetStream API, cannot read the
	// ledger nor anyone's inbox. Only used when Listen is set.
	SubscriberPassword string
}

// ValidatorUser is the NATS user of embedded validators on an embedded
// server that listens.
const ValidatorUser = "validator"

// ValidatorInboxPrefix is the inbox prefix embedded validators use
// (nats.CustomInboxPrefix), the only subjects the validator user may
// subscribe to.
const ValidatorInboxPrefix = "_INBOX_keyledger_validator"

// SubscriberUser is the read-only NATS user of security teams on an
// embedded server that listens (EmbeddedConfig.SubscriberPassword).
const SubscriberUser = "subscriber"

// Embedded is an in-process NATS server. When it listens for clients it
// requires a user: this process connects as an internal user whose random
// password never leaves it.
type Embedded struct {
	*server.Server
	internalPassword string
}

const internalUser = "keyledger"

// StartEmbedded starts a JetStream server in this process. Every write is
// fsynced before it is acknowledged (sync_interval: always).
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	e := &Embedded{}
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
		if len(cfg.ValidatorPassword) < 24 {
			return nil, errors.New("eventstore: an embedded server that listens needs a validator password of at least 24 characters")
		}
		if cfg.SubscriberPassword != "" && len(cfg.SubscriberPassword) < 24 {
			return nil, errors.New("eventstore: the subscriber password must be at least 24 characters")
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("eventstore: %w", err)
		}
		e.internalPassword = base64.RawURLEncoding.EncodeToString(raw)
		stream := cfg.Stream
		if stream == "" {
			stream = schemas.DefaultStreamName
		}
		opts.Users = []*server.User{
			{Username: internalUser, Password: e.internalPassword},
			{Username: ValidatorUser, Password: cfg.ValidatorPassword, Permissions: validatorPermissions(stream)},
		}
		if cfg.SubscriberPassword != "" {
			opts.Users = append(opts.Users, &server.User{Username: SubscriberUser, Password: cfg.SubscriberPassword, Permissions: subscriberPermissions()})
		}
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
	e.Server = ns
	return e, nil
}

// validatorPermissions lets a client read the ledger stream (stream info,
// ordered consumers, direct gets) and publish usage and applied reports; it cannot
// publish to the ledger's subjects or touch any other stream.
func validatorPermissions(stream string) *server.Permissions {
	api := "$JS.API."
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			api + "INFO",
			api + "STREAM.INFO." + stream,
			api + "CONSUMER.CREATE." + stream + ".>",
			api + "CONSUMER.DELETE." + stream + ".>",
			api + "CONSUMER.INFO." + stream + ".>",
			api + "CONSUMER.MSG.NEXT." + stream + ".>",
			api + "DIRECT.GET." + stream,
			api + "DIRECT.GET." + stream + ".>",
			schemas.SubjectUsage,
			schemas.AppliedSubject("*"), // takes part in the fleet's barrier
		}},
		// Its own inbox prefix only: a subscription to _INBOX.> would see the
		// replies meant for keyledger's own connections.
		Subscribe: &server.SubjectPermission{Allow: []string{ValidatorInboxPrefix + ".>"}},
	}
}

// subscriberPermissions let a client subscribe to the public subjects and
// publish nothing at all: no ledger subject, no JetStream API (so no stream
// info, no consumer, no direct get), no usage report, no request.
//
// It gets no inbox either: every user of the server shares one account, so
// a subscription to _INBOX.> would receive the replies meant for the other
// connections, among them the ledger events (with key hashes) JetStream
// delivers to this process's consumers. Plain subscribing (nats sub) needs
// no inbox. The deny list holds the ledger, the JetStream API and the
// inboxes outright, so a later widening of the allow list cannot open them.
func subscriberPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{
			Allow: []string{schemas.SubjectPublicRoot + ".>"},
			Deny:  []string{schemas.SubjectRoot + ".>", "$JS.>", "_INBOX.>"},
		},
	}
}

// ConnectEmbedded opens the in-process connection to an embedded server.
func ConnectEmbedded(e *Embedded) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(e.Server), nats.Name("keyledger"), nats.MaxReconnects(-1)}
	if e.internalPassword != "" {
		opts = append(opts, nats.UserInfo(internalUser, e.internalPassword))
	}
	nc, err := nats.Connect("", opts...)
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

// WriteError reports a write error JetStream met on one of its streams or
// consumers (a full disk), or a stream on disk it could not recover (a
// start on a full disk), or nil. After a write error nats-server stops
// storing and no longer answers publishes to that stream until the server
// starts again. (Restarting JetStream alone, DisableJetStream then
// EnableJetStream, races with API requests in flight inside nats-server
// v2.15.2: the race detector says so.)
func (e *Embedded) WriteError() error {
	if !e.JetStreamEnabled() {
		return errors.New("eventstore: jetstream is not running")
	}
	h := e.Healthz(&server.HealthzOptions{Details: true})
	for _, he := range h.Errors {
		if (he.Type == server.HealthzErrorStream || he.Type == server.HealthzErrorConsumer) && (strings.Contains(he.Error, "write error") || strings.Contains(he.Error, "could not be recovered")) {
			return fmt.Errorf("eventstore: %s", he.Error)
		}
	}
	return nil
}
