package password

import (
	"strings"
	"testing"
)

var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	h, err := HashWith([]byte("a long password"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q", h)
	}
	h2, _ := HashWith([]byte("a long password"), cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"a long password": true, "a long passwore": false, "": false, "a long password ": false} {
		if ok, err := Verify(h, []byte(pw)); ok != want || err != nil {
			t.Errorf("Verify(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if _, err := HashWith([]byte("short"), cheap); err == nil {
		t.Error("a 5-byte password hashed")
	}
}

func TestDefaultCost(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes at the default cost (64 MiB)")
	}
	h, err := Hash([]byte("a long password"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("hash %q", h)
	}
	if ok, _ := Verify(h, []byte("a long password")); !ok {
		t.Error("the password does not verify")
	}
}

func TestCheck(t *testing.T) {
	good, _ := HashWith([]byte("a long password"), cheap)
	if err := Check(good); err != nil {
		t.Fatal(err)
	}
	salt := "c2FsdHNhbHRzYWx0c2FsdA"
	key := "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	for _, bad := range []string{
		"",
		"hunter2",
		"$2a$10$abcdefghijklmnopqrstuu", // bcrypt
		"$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,             // not argon2id
		"$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,            // old version
		"$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key,       // 4 GiB
		"$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,         // too slow
		"$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,            // no lane
		"$argon2id$v=19$m=64,t=1,p=300$" + salt + "$" + key,          // too many lanes
		"$argon2id$v=19$m=64,t=1$" + salt + "$" + key,                // no p
		"$argon2id$v=19$m=64,t=1,p=1,x=2$" + salt + "$" + key,        // extra
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:10],       // short key
		"$argon2id$v=19$m=64,t=1,p=1$!!$" + key,                      // bad salt
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$extra", // extra field
	} {
		if err := Check(bad); err == nil {
			t.Errorf("Check(%q) passed", bad)
		}
		if ok, err := Verify(bad, []byte("a long password")); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v", bad, ok, err)
		}
	}
}
