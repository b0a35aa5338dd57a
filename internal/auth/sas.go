package auth

import (
	"context"
	"encoding/base64"
	"errors"

	"github.com/moteiot/mote/internal/azureiot"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

// Reasons an Azure IoT Hub SAS token is refused, besides ErrBadSecret,
// ErrExpired and ErrDisabled.
var (
	ErrSASWrongDevice = &core.Error{Kind: core.KindUnauthorized, Msg: "SAS token is for another device"}
	ErrSASExpired     = &core.Error{Kind: core.KindUnauthorized, Msg: "SAS token expired"}
)

// SetSealer gives the authenticator the box that opens symmetricKey
// credentials (the data directory's seal.key). Without it, SAS tokens are
// refused. Call it before the broker starts.
func (d *Devices) SetSealer(b *seal.Box) { d.sealer = b }

// SAS authenticates an Azure IoT Hub device: a SAS token (the MQTT
// password) for host/devices/deviceID, signed with one of the thing's
// symmetricKey credentials that is neither revoked nor expired. The
// identity expires when the token does (or the credential, if earlier):
// the broker closes the connection then.
func (d *Devices) SAS(ctx context.Context, host, deviceID, token string) (Identity, error) {
	t, err := azureiot.ParseSAS(token)
	if err != nil {
		return Identity{}, ErrBadSecret
	}
	now := d.now()
	if !t.ForDevice(host, deviceID) {
		return Identity{}, ErrSASWrongDevice
	}
	// The cache key is the keyed hash of the whole token: a token is
	// checked against the store once, until it expires or the thing
	// changes.
	key := "sas:" + string(d.hasher.Hash(token))
	if id, ok := d.cached(key); ok && id.Thing == deviceID {
		return id, nil
	}
	gen := d.generation()
	if d.sealer == nil {
		return Identity{}, ErrBadSecret
	}
	creds, err := d.st.Credentials().ListByThing(ctx, deviceID)
	if core.IsNotFound(err) {
		return Identity{}, ErrBadSecret
	}
	if err != nil {
		return Identity{}, err
	}
	var match *store.Credential
	for i := range creds {
		c := &creds[i]
		if c.Type != store.CredentialSymmetricKey || c.SealedKey == "" {
			continue
		}
		k, err := d.openKey(c.SealedKey)
		if err != nil {
			continue // a key that does not open (wrong seal.key) signs nothing
		}
		if t.Verify(k) {
			match = c
			break
		}
	}
	if match == nil {
		return Identity{}, ErrBadSecret
	}
	id, err := d.check(ctx, *match) // revoked, credential expired, thing disabled
	if err != nil {
		return Identity{}, err
	}
	if !t.Expiry.After(now) {
		return Identity{}, ErrSASExpired
	}
	if id.Expires.IsZero() || t.Expiry.Before(id.Expires) {
		id.Expires = t.Expiry
	}
	exp := id.Expires
	d.remember(gen, key, id, &exp)
	return id, nil
}

func (d *Devices) openKey(sealed string) ([]byte, error) {
	s, err := d.sealer.Open(sealed)
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("auth: symmetric key is not base64")
	}
	return k, nil
}
