// Command webhook-receiver is a tiny webhook endpoint for trying keyledger's
// deliveries (docker-compose.yml runs it): it prints one line per delivery,
// with the webhook-id, so that a delivery made twice shows up as the same id
// twice. With WEBHOOK_SECRET (the endpoint's whsec_… secret) it checks the
// Standard Webhooks signature and answers 400 to a delivery that does not
// verify.
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = "127.0.0.1:9000"
	}
	var wh *standardwebhooks.Webhook
	if s := os.Getenv("WEBHOOK_SECRET"); s != "" {
		var err error
		if wh, err = standardwebhooks.NewWebhook(s); err != nil {
			log.Fatalf("WEBHOOK_SECRET: %v", err)
		}
	}
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(400)
			return
		}
		if wh != nil {
			if err := wh.Verify(body, r.Header); err != nil {
				log.Printf("refused %s: %v", r.Header.Get("webhook-id"), err)
				w.WriteHeader(400)
				return
			}
		}
		var e struct {
			Event   string `json:"event"`
			Context struct {
				OrganizationID *string `json:"organization_id"` // null for operator-wide events
			} `json:"context"`
		}
		_ = json.Unmarshal(body, &e)
		org := "-"
		if e.Context.OrganizationID != nil {
			org = *e.Context.OrganizationID
		}
		log.Printf("delivery %s %s org=%s", r.Header.Get("webhook-id"), e.Event, org)
		w.WriteHeader(200)
	})
	log.Printf("webhook-receiver listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
