package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// handshakeResult is what the test server saw of one connection.
type handshakeResult struct {
	peerCN string // the client certificate's common name, "" if none
	err    error
}

// startTLSServer listens on 127.0.0.1:0 with the server certificate issued by
// ca, verifying client certificates if given. For each connection it sends
// what it saw on the returned channel and writes "ok" to the client.
func startTLSServer(t *testing.T, ca *CA) (addr string, results <-chan handshakeResult) {
	t.Helper()
	cert := serverCert(t, t.TempDir(), ca)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan handshakeResult, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- serve(conn.(*tls.Conn), ca)
		}
	}()
	return ln.Addr().String(), ch
}

func serve(conn *tls.Conn, ca *CA) handshakeResult {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Handshake(); err != nil {
		return handshakeResult{err: err}
	}
	var res handshakeResult
	if peers := conn.ConnectionState().PeerCertificates; len(peers) > 0 {
		res.peerCN = peers[0].Subject.CommonName
		res.err = ca.VerifyClient(peers[0], time.Now())
	}
	conn.Write([]byte("ok"))
	return res
}

// dial connects to addr as a client that trusts ca for the server name
// "localhost", presenting clientCert if it has any certificate, and reads
// the server's greeting.
func dial(t *testing.T, addr string, ca *CA, clientCert tls.Certificate) error {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	if len(clientCert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{clientCert}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// With TLS 1.3 the server's verdict on the client certificate arrives
	// after the client's handshake completes: read to see it.
	_, err = io.ReadAll(conn)
	return err
}

func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)

	issuedPEM, issuedKey, _, err := ca.IssueClientCert("issued-thing", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := tls.X509KeyPair(issuedPEM, issuedKey)
	if err != nil {
		t.Fatal(err)
	}

	csrPEM, deviceKey := newCSRWithKey(t, "ignored")
	_, signed, err := ca.SignCSR(csrPEM, "csr-thing", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fromCSR := tls.Certificate{Certificate: [][]byte{signed.Raw}, PrivateKey: deviceKey}

	foreignPEM, foreignKey, _, err := other.IssueClientCert("intruder", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(foreignPEM, foreignKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		client  tls.Certificate
		wantCN  string
		wantErr bool
	}{
		{"IssueClientCert", issued, "issued-thing", false},
		{"SignCSR", fromCSR, "csr-thing", false},
		{"no client certificate", tls.Certificate{}, "", false},
		{"certificate from another CA", foreign, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, results := startTLSServer(t, ca)
			clientErr := dial(t, addr, ca, tt.client)
			res := <-results
			if tt.wantErr {
				if res.err == nil || clientErr == nil {
					t.Errorf("handshake: server error %v, client error %v; want both to fail", res.err, clientErr)
				}
				return
			}
			if clientErr != nil || res.err != nil {
				t.Fatalf("handshake: server error %v, client error %v; want none", res.err, clientErr)
			}
			if res.peerCN != tt.wantCN {
				t.Errorf("server saw client %q; want %q", res.peerCN, tt.wantCN)
			}
		})
	}
}

func TestTLSClientRejectsOtherServer(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	addr, results := startTLSServer(t, other)
	err := dial(t, addr, ca, tls.Certificate{})
	<-results
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("dial(server of another CA) = %v; want an unknown authority error", err)
	}
}
