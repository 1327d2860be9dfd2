// Package webhooks delivers keyledger's public events to the webhook
// endpoints subscribers register, the way the Standard Webhooks
// specification describes: each delivery is a signed POST (webhook-id,
// webhook-timestamp, webhook-signature, plus a WorkOS-Signature for WorkOS
// SDKs), retried with backoff and jitter on a schedule, honouring
// Retry-After, until it is delivered or finally fails.
//
// The Engine runs one worker per enabled endpoint, so a slow or dead
// endpoint never delays the others, and a delivery waiting for its retry
// never blocks the endpoint's later events. Every attempt is written to an
// attempt log that can be listed, and deliveries that finally failed in a
// time range can be recovered (sent again). An endpoint answering 410 Gone,
// or failing continuously for days, is disabled through the ledger.
//
// The SSRF guard refuses loopback, private, link-local, unspecified,
// multicast and CGNAT addresses unless configuration allows them: when an
// endpoint is created (CheckURL) and again when each delivery connects,
// after DNS resolution, so that DNS rebinding does not get through.
//
// Deliveries and attempts are kept durably by a Queue, which the JetStream
// side (eventstore.DeliveryQueue) implements; this package imports only the
// standard library, domain and schemas.
package webhooks
