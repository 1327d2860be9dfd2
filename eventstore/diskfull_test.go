//go:build linux

package eventstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyledger/keyledger/internal/ledgertest"
)

// A stream that met a full disk stops storing (nats-server keeps the write
// error and answers no further publish); WriteError reports it, and a new
// server on the same store brings the stream back with every acknowledged
// message and none of the failed one.
func TestEmbeddedReportsAWriteError(t *testing.T) {
	mnt := ledgertest.Tmpfs(t, 32<<20)
	env := startEnv(t, filepath.Join(mnt, "data"))
	e, nc := env.ns, env.nc
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WriteError(); err != nil {
		t.Fatalf("write error before any: %v", err)
	}
	filler := ledgertest.FillDisk(t, mnt)
	acked := 0
	for ; ; acked++ {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Publish(pctx, "s.a", make([]byte, 1000))
		cancel()
		if err != nil {
			break
		}
		if acked == 10000 {
			t.Fatal("10000 publishes stored on a full disk")
		}
	}
	if err := e.WriteError(); err == nil {
		t.Fatal("no write error reported after a publish failed on a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	env.stop()
	env = startEnv(t, env.dir)
	e, nc = env.ns, env.nc
	if js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if st, err = js.Stream(ctx, "S"); err != nil {
		t.Fatal(err)
	}
	if err := e.WriteError(); err != nil {
		t.Fatalf("write error after the restart: %v", err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("after")); err != nil {
		t.Fatalf("publish after the restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(acked+1) {
		t.Fatalf("%d messages after the restart, want the %d acknowledged and the one after", info.State.Msgs, acked)
	}
}
