package alarms

// Test helpers for the end-to-end tests of package alarms_test.
var StartMailbox = startMailbox

type (
	Hook    = hook
	Mailbox = mailbox
)

func (b *mailbox) Addr() string { return b.addr }

// Received returns the data of every mail received.
func (b *mailbox) Received() []string {
	var out []string
	for _, m := range b.received() {
		out = append(out, m.data)
	}
	return out
}

func (h *hook) Received() []string { return h.received() }
