package apiclient

import (
	"context"
	"encoding/json"
	"github.com/moteiot/mote/internal/httpapi/wire"
	"net/http"
)

// ---- queued commands ----

// CommandInput is the body of SendCommand. Payload is any JSON value (nil:
// none); TTLSeconds 0 takes the server's default (an hour).
type CommandInput struct {
	Name       string          `json:"name"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	TTLSeconds int             `json:"ttlSeconds,omitempty"`
}

// SendCommand queues a command for a thing.
func (c *Client) SendCommand(ctx context.Context, thing string, in CommandInput) (wire.Command, error) {
	var out wire.Command
	err := c.do(ctx, request{method: http.MethodPost, path: "/things/" + seg(thing) + "/commands", body: in}, &out)
	return out, err
}

// GetCommand returns one command of a thing.
func (c *Client) GetCommand(ctx context.Context, thing, id string) (wire.Command, error) {
	var out wire.Command
	err := c.do(ctx, request{method: http.MethodGet, path: "/things/" + seg(thing) + "/commands/" + seg(id)}, &out)
	return out, err
}

// ListCommands returns one page of a thing's commands, newest first,
// optionally only those in status.
func (c *Client) ListCommands(ctx context.Context, thing, status string, o ListOptions) ([]wire.Command, string, error) {
	q := o.values()
	if status != "" {
		q.Set("status", status)
	}
	return list[wire.Command](ctx, c, "/things/"+seg(thing)+"/commands", q)
}

// CancelCommand cancels a command not yet delivered and returns it.
func (c *Client) CancelCommand(ctx context.Context, thing, id string) (wire.Command, error) {
	var out wire.Command
	err := c.do(ctx, request{method: http.MethodDelete, path: "/things/" + seg(thing) + "/commands/" + seg(id)}, &out)
	return out, err
}
