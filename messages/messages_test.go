package messages

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The remote layer serialises messages with their full protobuf name and
// looks the type up in the global registry on the receiving side, so every
// message must be registered under "messages.<Name>".
func TestMessagesRegisteredAndRoundTrip(t *testing.T) {
	msgs := []proto.Message{
		&GetState{},
		&State{City: "gotham", Delta: []byte{1, 2}, Digest: []byte{3}, Heroes: 7, Incarnation: 42},
		&GetDigest{},
		&DigestReply{City: "metropolis", Digest: []byte{9}, Heroes: 3, Incarnation: 1},
		&MergeDelta{Delta: []byte{4, 5}, From: "capitol"},
		&MergeAck{Changed: 2},
		&SyncRequest{From: "gotham", Msg: []byte{1, 2}},
		&SyncReply{Msg: []byte{3, 4}},
		&AssignHero{HeroId: "batman", Context: []byte("mission")},
		&AssignReply{Error: AssignError_ASSIGN_DEAD, Message: "dead", Delta: []byte{7}},
		&Bomb{},
		&BombAck{City: "gotham"},
	}
	for _, m := range msgs {
		name := m.ProtoReflect().Descriptor().FullName()
		if name.Parent() != "messages" {
			t.Errorf("%s: proto package %q, want messages", name, name.Parent())
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
		if err != nil {
			t.Fatalf("%s not registered: %v", name, err)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %s: %v", name, err)
		}
		got := mt.New().Interface()
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatalf("unmarshal %s: %v", name, err)
		}
		if !proto.Equal(m, got) {
			t.Errorf("%s: round trip changed the message: %v -> %v", name, m, got)
		}
	}
}

func TestAssignErrorValues(t *testing.T) {
	want := map[AssignError]string{
		0: "ASSIGN_OK", 1: "ASSIGN_DEAD", 2: "ASSIGN_UNKNOWN", 4: "ASSIGN_BAD_REQUEST", 5: "ASSIGN_REFUSED",
	}
	for v, name := range want {
		if v.String() != name {
			t.Errorf("AssignError(%d) = %s, want %s", v, v.String(), name)
		}
	}
	if n := AssignError(0).Descriptor().Values().Len(); n != len(want) {
		t.Errorf("AssignError has %d values, want %d", n, len(want))
	}
	// 3 (ASSIGN_WRONG_CITY, never produced) is reserved, so the number is
	// never reused for another code.
	values := AssignError(0).Descriptor()
	if r := values.ReservedRanges(); !r.Has(3) {
		t.Error("AssignError value 3 is not reserved")
	}
	if !values.ReservedNames().Has("ASSIGN_WRONG_CITY") {
		t.Error("AssignError name ASSIGN_WRONG_CITY is not reserved")
	}
	var _ protoreflect.Enum = AssignError_ASSIGN_OK
}
