package schemas

import (
	"strings"
	"testing"
)

func TestNodeNames(t *testing.T) {
	for _, ok := range []string{"node-a", "host:1234", "a_b", strings.Repeat("n", 128)} {
		if !ValidNodeName(ok) {
			t.Errorf("ValidNodeName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a.b", "a*", ">", "a b", "a\tb", "é", strings.Repeat("n", 129)} {
		if ValidNodeName(bad) {
			t.Errorf("ValidNodeName(%q) = true", bad)
		}
	}
	for in, want := range map[string]string{"web-1.example.com:42": "web-1-example-com:42", "": "node", "a b*>": "a-b--"} {
		if got := NodeName(in); got != want || !ValidNodeName(got) {
			t.Errorf("NodeName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := NodeName(strings.Repeat("x", 200)); len(got) != 128 {
		t.Errorf("NodeName of 200 bytes: %d bytes", len(got))
	}
	if AppliedSubject("node-a") != "keyledger.applied.node-a" {
		t.Errorf("AppliedSubject = %q", AppliedSubject("node-a"))
	}
}
