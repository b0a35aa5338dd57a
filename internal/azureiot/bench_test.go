package azureiot

import (
	"testing"
	"time"
)

func BenchmarkSASCheck(b *testing.B) {
	key := []byte("0123456789abcdef0123456789abcdef")
	tok := NewSAS(key, "hub.example.com", "dev1", time.Now().Add(time.Hour))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s, err := ParseSAS(tok)
		if err != nil || s.Check("hub.example.com", "dev1", [][]byte{key}, now) != nil {
			b.Fatal("token refused")
		}
	}
}

func BenchmarkPropertyBag(b *testing.B) {
	bag := "%24.ct=application%2Fjson&%24.ce=utf-8&%24.mid=msg-1&alert=high%20%26%20dry"
	b.ReportAllocs()
	for b.Loop() {
		if ps, err := ParsePropertyBag(bag); err != nil || len(ps) != 4 {
			b.Fatal(ps, err)
		}
	}
}
