package coap

import (
	"encoding/json"
	"errors"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR decoder is bounded like the JSON the platform accepts: depth,
// array and map sizes (the body itself is bounded by MaxPayload); map
// keys must be strings, as in JSON.
var (
	mapType = reflect.TypeOf(map[string]any(nil))
	cborDec cbor.DecMode
	cborEnc cbor.EncMode
)

func init() {
	var err error
	cborDec, err = cbor.DecOptions{
		MaxNestedLevels:  32,
		MaxArrayElements: 65536,
		MaxMapPairs:      65536,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthAllowed,
		DefaultMapType:   mapType,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	cborEnc, err = cbor.EncOptions{Sort: cbor.SortCoreDeterministic}.EncMode()
	if err != nil {
		panic(err)
	}
}

// cborToJSON converts a CBOR data item to JSON for the platform: maps
// with string keys become objects, byte strings base64 strings; what JSON
// cannot hold (NaN, infinities, other map keys, trailing data) is an error.
func cborToJSON(b []byte) ([]byte, error) {
	var v any
	rest, err := cborDec.UnmarshalFirst(b, &v)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after the CBOR item")
	}
	return json.Marshal(v)
}

// jsonToCBOR converts a JSON document to CBOR for a device that asked for
// it (Accept: 60). Numbers stay exact: integers as CBOR integers, others
// as float64.
func jsonToCBOR(b []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return cborEnc.Marshal(numbers(v))
}

// numbers replaces json.Number-free float64 values that are whole by
// int64, so that 3 travels as the CBOR integer 3.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case float64:
		if x == float64(int64(x)) && x < 1<<53 && x > -(1<<53) {
			return int64(x)
		}
	}
	return v
}
