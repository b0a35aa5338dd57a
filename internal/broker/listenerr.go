package broker

import "fmt"

// ListenError is New's error when a listener cannot bind its address.
type ListenError struct {
	Listener string // tcp, tls
	Addr     string
	Err      error
}

func (e *ListenError) Error() string {
	name := map[string]string{"tcp": "mqtt", "tls": "mqtts"}[e.Listener]
	return fmt.Sprintf("broker: %s listener %s: %v", name, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }
