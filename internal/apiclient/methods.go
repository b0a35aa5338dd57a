package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// MethodResult is a device's answer to a direct method.
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// InvokeMethod calls a direct method on a connected device and waits for
// its answer. payload is JSON (nil sends none: the device gets null);
// timeout 0 is the server's default (30 s). A thing that is not connected
// is a 404 *Error, a device that does not answer in time a 504.
func (c *Client) InvokeMethod(ctx context.Context, thing, method string, payload json.RawMessage, timeout time.Duration) (MethodResult, error) {
	body := map[string]any{}
	if payload != nil {
		body["payload"] = payload
	}
	wait := 30 * time.Second
	if timeout > 0 {
		secs := int((timeout + time.Second - 1) / time.Second)
		body["timeoutSeconds"] = secs
		wait = time.Duration(secs) * time.Second
	}
	// The call may outlast the client's usual timeout.
	cc := c
	if c.HTTP != nil && c.HTTP.Timeout > 0 && c.HTTP.Timeout < wait+15*time.Second {
		copied, hc := *c, *c.HTTP
		hc.Timeout = wait + 15*time.Second
		copied.HTTP = &hc
		cc = &copied
	}
	var out MethodResult
	err := cc.do(ctx, request{method: http.MethodPost, path: "/things/" + seg(thing) + "/methods/" + seg(method), body: body}, &out)
	return out, err
}
