package jsonkeep

import (
	"encoding/json"
	"testing"
)

type v1 struct {
	A string  `json:"a"`
	B int     `json:"b,omitempty"`
	X Unknown `json:"-"`
}

func TestRoundTrip(t *testing.T) {
	in := `{"a":"x","future":{"k":[1,2]},"b":3,"zeta":true}`
	var v v1
	u, err := Decode([]byte(in), &v)
	if err != nil || v.A != "x" || v.B != 3 || len(u) != 2 {
		t.Fatalf("Decode = %+v, %v, %v", v, u, err)
	}
	v.B = 4
	out, err := Encode(v, u)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":"x","b":4,"future":{"k":[1,2]},"zeta":true}`; string(out) != want {
		t.Errorf("Encode = %s, want %s", out, want)
	}
	if !json.Valid(out) {
		t.Errorf("Encode = %s: not JSON", out)
	}
	// A member the value now has wins over the kept one.
	out, _ = Encode(v1{A: "y"}, Unknown{"a": json.RawMessage(`"old"`)})
	if string(out) != `{"a":"y"}` {
		t.Errorf("Encode with a kept known member = %s", out)
	}
}
