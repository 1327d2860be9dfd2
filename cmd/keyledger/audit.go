package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/keyledger/keyledger/sealer"
)

// runAudit is `keyledger audit export|verify`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "export" && args[0] != "verify") {
		fmt.Fprintln(stderr, "usage: keyledger audit export --out FILE | keyledger audit verify --public-key KEY [--file FILE]")
		return errUsage
	}
	fs := flag.NewFlagSet("keyledger audit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "export: the file to write")
	file := fs.String("file", "", "verify: an exported ledger file (default: export from the running server)")
	pubArg := fs.String("public-key", env("KEYLEDGER_SEAL_PUBLIC_KEY", ""), "verify: the pinned Ed25519 public key of the sealer, hex or base64 (KEYLEDGER_SEAL_PUBLIC_KEY)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	fetch := func() (io.ReadCloser, error) {
		base := strings.TrimRight(env("KEYLEDGER_URL", "http://127.0.0.1:8080"), "/")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ledger/export", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+os.Getenv("KEYLEDGER_ADMIN_KEY"))
		resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			return nil, fmt.Errorf("GET /ledger/export: %d %s", resp.StatusCode, b)
		}
		return resp.Body, nil
	}
	if args[0] == "export" {
		if *out == "" {
			fmt.Fprintln(stderr, "keyledger audit export: --out is required")
			return errUsage
		}
		body, err := fetch()
		if err != nil {
			return err
		}
		defer body.Close()
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if *pubArg == "" {
		fmt.Fprintln(stderr, "keyledger audit verify: --public-key is required: the key the sealer printed, pinned out of band")
		return errUsage
	}
	pub, err := sealer.ParsePublicKey(*pubArg)
	if err != nil {
		return err
	}
	var src io.ReadCloser
	if *file != "" {
		if src, err = os.Open(*file); err != nil {
			return err
		}
	} else if src, err = fetch(); err != nil {
		return err
	}
	defer src.Close()
	msgs, cps, err := readExport(src)
	if err != nil {
		return err
	}
	report := sealer.Verify(msgs, cps, pub)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(report); err != nil {
		return err
	}
	if !report.OK() {
		return exitError(1)
	}
	return nil
}
