package workload

import "testing"

const dgA = "sha256:" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestDecodeStrict(t *testing.T) {
	for _, tt := range []struct{ json, want string }{
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","extra":1}]}`, `workloads.json: json: unknown field "extra"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `"}]} {}`, `workloads.json: expected one JSON object, found more data`},
		{`{"containers":[{"name":"A","image":"r.example/x@` + dgA + `"}]}`, `workloads.json: containers[0].name: expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got "A"`},
	} {
		if _, err := Decode([]byte(tt.json), "demo"); err == nil || err.Error() != tt.want {
			t.Errorf("Decode(%s) = %v, want %s", tt.json, err, tt.want)
		}
	}
}

// FuzzDecode: no repository JSON panics the device.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","target":"apps/demo/a.tar","health":{"command":["true"],"interval":"5s"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, "demo")
		if err != nil {
			return
		}
		if _, err := m.Encode(); err != nil {
			t.Fatal(err)
		}
	})
}
