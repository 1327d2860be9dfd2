// Package domain is keyledger in its own words: the API key aggregate, the
// commands that change it and the rules that decide them, the events they
// produce, the permission catalogue and policy, the key format, and the small
// error vocabulary every edge maps once. It imports only the standard library;
// adapters implement the ports declared here.
package domain
