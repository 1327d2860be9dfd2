package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// LoadGen is the one load generator every HTTP comparison uses
// (validate-http, validate-postgres): both sides of a comparison are driven
// by a LoadGen built with the same connection count and the same request
// bodies, so whatever differs between them is the server, not the client.
//
// It is a lean HTTP/1.1 client, so that it takes as little as possible of
// the CPU it shares with the servers it drives (Go's net/http client cost
// more than the server under test). Each of its conns workers owns one
// persistent TCP connection, kept across rounds and dialled again only when
// the server closes it, and sends POST requests in a closed loop: the next
// request, written whole with one Write from bytes serialised once in
// NewLoadGen, then the answer, read by a small strict parser that allocates
// nothing (status line, headers, exactly Content-Length bytes of body,
// discarded), the latency recorded, repeat. Every answer must be
// "HTTP/1.1 200" with a Content-Length; any other status, an answer that
// does not parse (chunked bodies included) or an I/O error fails the round.
//
// The generator runs in the benchmark's own process, on the same cores as
// the servers it drives, so absolute figures include its cost, equally for
// both sides.
type LoadGen struct {
	url   string
	addr  string // host:port to dial
	conns int
	err   error // a URL the generator cannot drive, reported by every round

	// reqs holds every request, serialised once, back to back: request i
	// is reqs[offs[i]:offs[i+1]]. One pointer-free allocation, which the
	// garbage collector does not scan.
	reqs []byte
	offs []int

	workers []*loadgenWorker
}

// loadgenGrace is how long a round may outlast its duration before the
// connections' deadlines fail it: a server that stops answering fails the
// round instead of hanging the run. A variable for the tests.
var loadgenGrace = 30 * time.Second

const (
	loadgenReadBuf    = 4 << 10 // the response reader's buffer, the longest header line
	loadgenMaxHeaders = 100     // header lines in one response
	loadgenShowBytes  = 256     // how much of a refused response an error shows
)

// loadgenWorker is one connection's state, kept across rounds so that a round
// does not pay for dialling or for growing its latency buffer again. Only
// its own goroutine uses it during a round, except mu and conn (see
// fail).
type loadgenWorker struct {
	mu     sync.Mutex // held to replace conn, and by fail to reach it
	conn   net.Conn
	br     *bufio.Reader
	served int  // responses read on conn
	close  bool // the last response said Connection: close
	lats   []time.Duration
	next   int // index of the next request
}

// NewLoadGen returns a generator that POSTs bodies (round-robin, each
// worker starting at its own offset) to url over conns connections, with
// header on every request (Content-Type defaults to application/json; Host,
// Content-Length and Transfer-Encoding are the generator's own).
func NewLoadGen(rawURL string, conns int, bodies [][]byte, header http.Header) *LoadGen {
	conns = max(conns, 1)
	g := &LoadGen{url: rawURL, conns: conns}
	for i := 0; i < conns; i++ {
		off := 0
		if len(bodies) > 0 {
			off = i * len(bodies) / conns
		}
		g.workers = append(g.workers, &loadgenWorker{next: off})
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		g.err = fmt.Errorf("loadgen: %w", err)
		return g
	case u.Scheme != "http" || u.Host == "" || u.User != nil:
		g.err = fmt.Errorf("loadgen: %s: only http://host[:port]/path URLs", rawURL)
		return g
	}
	g.addr = u.Host
	if u.Port() == "" {
		g.addr = net.JoinHostPort(u.Hostname(), "80")
	}

	ct := header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	var rest bytes.Buffer
	_ = header.WriteSubset(&rest, map[string]bool{
		"Host": true, "Content-Type": true, "Content-Length": true, "Transfer-Encoding": true,
	})
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: " + ct + "\r\nContent-Length: "
	size := 0
	for _, b := range bodies {
		size += len(head) + 20 + 2 + rest.Len() + 2 + len(b)
	}
	g.reqs = make([]byte, 0, size)
	g.offs = make([]int, 0, len(bodies)+1)
	for _, b := range bodies {
		g.offs = append(g.offs, len(g.reqs))
		g.reqs = append(g.reqs, head...)
		g.reqs = strconv.AppendInt(g.reqs, int64(len(b)), 10)
		g.reqs = append(g.reqs, "\r\n"...)
		g.reqs = append(g.reqs, rest.Bytes()...)
		g.reqs = append(g.reqs, "\r\n"...)
		g.reqs = append(g.reqs, b...)
	}
	g.offs = append(g.offs, len(g.reqs))
	return g
}

// Conns is the number of connections (and workers).
func (g *LoadGen) Conns() int { return g.conns }

// request is the i-th serialised request.
func (g *LoadGen) request(i int) []byte { return g.reqs[g.offs[i]:g.offs[i+1]] }

// loadgenRound is one round's shared state.
type loadgenRound struct {
	g        *LoadGen
	ctx      context.Context
	hard     time.Time      // the connections' deadline: d + loadgenGrace
	deadline time.Time      // when workers stop sending; set before start closes
	ready    sync.WaitGroup // every worker connected
	start    chan struct{}  // closed when every worker is ready: the barrier
	done     sync.WaitGroup
	stop     atomic.Bool // checked by the workers between requests

	mu   sync.Mutex // guards err and over; held while interrupting
	err  error
	over bool // the round has returned: its connections are not its own
}

// fail records the round's first error and stops every worker: they check
// stop between requests, and an expired deadline wakes those blocked on
// their connection.
func (r *loadgenRound) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return // a late cancellation must not touch the next round's connections
	}
	if r.err == nil {
		r.err = err
	}
	r.stop.Store(true)
	for _, w := range r.g.workers {
		w.mu.Lock()
		if w.conn != nil {
			_ = w.conn.SetDeadline(time.Unix(1, 0))
		}
		w.mu.Unlock()
	}
}

// Side returns a bench Side that drives the server for the round's
// duration and reports the requests answered and every request's latency
// (from just before writing the request to having read the answer's last
// byte; dialling, when the server closed a connection, is not included).
func (g *LoadGen) Side() Side {
	return func(ctx context.Context, d time.Duration) (Sample, error) {
		if g.err != nil {
			return Sample{}, g.err
		}
		if len(g.offs) < 2 {
			return Sample{}, errors.New("loadgen: no request bodies")
		}
		if err := ctx.Err(); err != nil {
			return Sample{}, err
		}
		// Preallocate for a generous rate (up to 8 MB a worker) so the
		// round does not allocate while it measures; buffers grown in a
		// round are kept for the next.
		want := min(int(d.Seconds()*200_000)/g.conns, 1<<20) + 64
		for _, w := range g.workers {
			if cap(w.lats) < want {
				w.lats = make([]time.Duration, 0, want)
			}
			w.lats = w.lats[:0]
		}
		r := &loadgenRound{g: g, ctx: ctx, hard: time.Now().Add(d + loadgenGrace), start: make(chan struct{})}
		stopWatch := context.AfterFunc(ctx, func() { r.fail(fmt.Errorf("loadgen: %w", context.Cause(ctx))) })
		r.ready.Add(len(g.workers))
		r.done.Add(len(g.workers))
		for _, w := range g.workers {
			go w.run(r)
		}
		// The barrier: every connection is open before the clock starts,
		// so that the round measures all of them from its first request.
		r.ready.Wait()
		start := time.Now()
		r.deadline = start.Add(d)
		close(r.start)
		r.done.Wait()
		elapsed := time.Since(start)
		stopWatch()
		r.mu.Lock()
		r.over = true
		err := r.err
		r.mu.Unlock()
		if err != nil {
			// Interrupted connections may still have answers on the way:
			// start the next round on fresh ones.
			g.Close()
			return Sample{}, err
		}
		n := 0
		for _, w := range g.workers {
			n += len(w.lats)
		}
		lats := make([]time.Duration, 0, n)
		for _, w := range g.workers {
			lats = append(lats, w.lats...)
		}
		return Sample{Ops: int64(n), Elapsed: elapsed, Latencies: lats}, nil
	}
}

// run is one worker's round: connect, wait at the barrier, then requests in
// a closed loop on its own connection until the round's time is up.
func (w *loadgenWorker) run(r *loadgenRound) {
	defer r.done.Done()
	err := w.prepare(r)
	r.ready.Done()
	if err != nil {
		r.fail(err)
		return
	}
	<-r.start
	g, deadline := r.g, r.deadline
	nreq := len(g.offs) - 1
	for !r.stop.Load() {
		req := g.request(w.next)
		if w.next++; w.next == nreq {
			w.next = 0
		}
		lat, end, err := w.roundTrip(r, req)
		if err != nil {
			r.fail(err)
			return
		}
		w.lats = append(w.lats, lat)
		if end.After(deadline) {
			return
		}
	}
}

// prepare opens the worker's connection if it has none, and sets the
// round's deadline on it.
func (w *loadgenWorker) prepare(r *loadgenRound) error {
	if w.conn == nil {
		return w.dial(r)
	}
	if err := w.conn.SetDeadline(r.hard); err != nil {
		return fmt.Errorf("loadgen: %s: %w", r.g.url, err)
	}
	return nil
}

// dial opens a new connection with the round's deadline.
func (w *loadgenWorker) dial(r *loadgenRound) error {
	w.closeConn()
	dctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", r.g.addr)
	if err != nil {
		return fmt.Errorf("loadgen: %s: %w", r.g.url, err)
	}
	if err := c.SetDeadline(r.hard); err != nil {
		c.Close()
		return fmt.Errorf("loadgen: %s: %w", r.g.url, err)
	}
	w.mu.Lock()
	w.conn = c
	stopped := r.stop.Load() // fail has passed this worker: it would not wake it
	w.mu.Unlock()
	if stopped {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, loadgenReadBuf)
	} else {
		w.br.Reset(c)
	}
	w.served, w.close = 0, false
	return nil
}

// closeConn closes the worker's connection, if any.
func (w *loadgenWorker) closeConn() {
	w.mu.Lock()
	c := w.conn
	w.conn = nil
	w.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// roundTrip writes one request and reads its answer, and returns the
// latency and the time the answer's last byte was read. A connection that
// the server closed while it was idle (it has answered before, and nothing
// of this answer arrived) is dialled again and the request sent once more,
// as HTTP clients do; any other failure is the round's.
func (w *loadgenWorker) roundTrip(r *loadgenRound, req []byte) (time.Duration, time.Time, error) {
	for retried := false; ; retried = true {
		if w.conn == nil {
			if err := w.dial(r); err != nil {
				return 0, time.Time{}, err
			}
		}
		reused := w.served > 0
		t0 := time.Now()
		_, err := w.conn.Write(req)
		started := false
		if err == nil {
			started, err = w.readResponse()
			if err == nil {
				end := time.Now()
				w.served++
				if w.close {
					w.closeConn()
				}
				return end.Sub(t0), end, nil
			}
		}
		w.closeConn()
		if started || !reused || retried || r.stop.Load() || !loadgenPeerClosed(err) {
			var pe *loadgenParseError
			if errors.As(err, &pe) {
				return 0, time.Time{}, fmt.Errorf("loadgen: %s: %w", r.g.url, err)
			}
			return 0, time.Time{}, fmt.Errorf("loadgen: %s: I/O error: %w", r.g.url, err)
		}
	}
}

// loadgenPeerClosed reports whether err is what a write to, or a read from,
// a connection the server has closed gives.
func loadgenPeerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// loadgenParseError is an answer the generator refuses (as opposed to an
// I/O error while reading it).
type loadgenParseError struct{ msg string }

func (e *loadgenParseError) Error() string { return e.msg }

func loadgenRefuse(format string, args ...any) error {
	return &loadgenParseError{msg: fmt.Sprintf(format, args...)}
}

// readResponse reads one answer: a "HTTP/1.1 200" status line, header lines
// up to the blank one (Content-Length required, Transfer-Encoding refused,
// Connection: close noted in w.close), then exactly Content-Length bytes of
// body, discarded. started reports whether any byte of it arrived. It
// allocates nothing unless it fails.
func (w *loadgenWorker) readResponse() (started bool, err error) {
	br := w.br
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return true, loadgenRefuse("malformed status line: longer than %d bytes: %q", loadgenReadBuf, line[:loadgenShowBytes])
		}
		if len(line) > 0 {
			return true, fmt.Errorf("reading the status line after %q: %w", line, err)
		}
		return false, fmt.Errorf("reading the status line: %w", err)
	}
	// "HTTP/1.1 " three digits, then " reason" or nothing, then CRLF.
	const proto = "HTTP/1.1 "
	if len(line) < len(proto)+3+2 || string(line[:len(proto)]) != proto || line[len(line)-2] != '\r' ||
		!loadgenDigit(line[9]) || !loadgenDigit(line[10]) || !loadgenDigit(line[11]) ||
		(line[12] != ' ' && len(line) != len(proto)+3+2) {
		return true, loadgenRefuse("malformed status line: %q", loadgenShow(line, br))
	}
	if line[9] != '2' || line[10] != '0' || line[11] != '0' {
		return true, loadgenRefuse("answered %s, not 200: %q", line[9:12], loadgenShow(line, br))
	}

	length := int64(-1)
	w.close = false
	for n := 0; ; n++ {
		if n == loadgenMaxHeaders {
			return true, loadgenRefuse("more than %d header lines", loadgenMaxHeaders)
		}
		line, err = br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return true, loadgenRefuse("malformed header: a line longer than %d bytes: %q", loadgenReadBuf, line[:loadgenShowBytes])
			}
			return true, fmt.Errorf("reading the headers: %w", err)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return true, loadgenRefuse("malformed header line (no CRLF): %q", line)
		}
		line = line[:len(line)-2]
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.IndexByte(line[:colon], ' ') >= 0 || bytes.IndexByte(line[:colon], '\t') >= 0 {
			return true, loadgenRefuse("malformed header line: %q", line)
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case loadgenFold(name, "content-length"):
			v, ok := loadgenAtoi(value)
			if !ok || (length >= 0 && v != length) {
				return true, loadgenRefuse("malformed Content-Length: %q", line)
			}
			length = v
		case loadgenFold(name, "transfer-encoding"):
			if !loadgenFold(value, "identity") {
				return true, loadgenRefuse("refused Transfer-Encoding %q: the load generator reads Content-Length bodies only", value)
			}
		case loadgenFold(name, "connection"):
			if loadgenHasToken(value, "close") {
				w.close = true
			}
		}
	}
	if length < 0 {
		return true, loadgenRefuse("no Content-Length in the answer")
	}
	if got, err := br.Discard(int(length)); err != nil {
		return true, fmt.Errorf("reading the body (%d of %d bytes): %w", got, length, err)
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(min(n, loadgenShowBytes))
		return true, loadgenRefuse("%d bytes after the answer's Content-Length: %q", n, b)
	}
	return true, nil
}

// loadgenShow is the first bytes of a refused answer: its first line and
// what has arrived after it.
func loadgenShow(line []byte, br *bufio.Reader) []byte {
	out := append([]byte(nil), line[:min(len(line), loadgenShowBytes)]...)
	if rest := loadgenShowBytes - len(out); rest > 0 {
		b, _ := br.Peek(min(br.Buffered(), rest))
		out = append(out, b...)
	}
	return out
}

func loadgenDigit(c byte) bool { return '0' <= c && c <= '9' }

// loadgenAtoi parses a non-negative decimal of at most 15 digits.
func loadgenAtoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if !loadgenDigit(c) {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// loadgenFold reports whether b equals the lower-case ASCII s, ignoring
// case.
func loadgenFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// loadgenHasToken reports whether the comma-separated list v holds the
// lower-case token tok, ignoring case.
func loadgenHasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		if loadgenFold(bytes.Trim(v[:i], " \t"), tok) {
			return true
		}
		v = v[min(i+1, len(v)):]
	}
	return false
}

// Close closes the generator's connections.
func (g *LoadGen) Close() {
	for _, w := range g.workers {
		w.closeConn()
	}
}
