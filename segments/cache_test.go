package segments

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

// stored reads key from Badger (nil when absent).
func stored(t *testing.T, r *rig, key []byte) []byte {
	t.Helper()
	var v []byte
	err := r.store.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func commitNow(t *testing.T, r *rig) {
	t.Helper()
	r.e.mu.Lock()
	err := r.e.commit()
	r.e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// The cache holds a profile's state and aliases exactly as Badger stores
// them once committed, later loads are answered from it, a dropped batch
// leaves it as stored, and an erasure takes them out.
func TestCacheHoldsWhatWasStored(t *testing.T) {
	r := newRig(t, "commit: 1m\n"+cartRules) // commits are the test's
	// The email's alias key (the anon id's is implied by the profile id).
	sk, ak := stateKey("shop", "a:c1"), aliasKey("shop", aliasEmail, "m1")
	same := func(when string) {
		t.Helper()
		r.e.mu.Lock()
		defer r.e.mu.Unlock()
		for _, k := range [][]byte{sk, ak} {
			want := stored(t, r, k)
			got, ok := r.e.cache.HasGet(nil, k)
			if want == nil || !ok || !bytes.Equal(got, want) {
				t.Fatalf("%s: %q cached %v %x, stored %x", when, k, ok, got, want)
			}
		}
		if len(r.e.mem) != 0 || len(r.e.aliasMem) != 0 {
			t.Fatalf("%s: %d states, %d aliases left in memory after the commit", when, len(r.e.mem), len(r.e.aliasMem))
		}
	}
	r.send(ev{name: "AddToCart", anon: "c1", email: "m1"})
	commitNow(t, r)
	same("after the first commit")
	first := stored(t, r, sk)

	cache, store := counterValue(r.e.m.loadCache), counterValue(r.e.m.loadStore)
	r.send(ev{name: "AddToCart", anon: "c1", email: "m1", props: `{"value": 5}`})
	if c, s := counterValue(r.e.m.loadCache)-cache, counterValue(r.e.m.loadStore)-store; c != 1 || s != 0 {
		t.Fatalf("the second event's load: %v from the cache, %v from Badger; want 1, 0", c, s)
	}
	commitNow(t, r)
	same("after the second commit")
	if bytes.Equal(first, stored(t, r, sk)) {
		t.Fatal("the second event did not change the stored state")
	}

	// Applied, then dropped before its commit: memory is cleared, the cache
	// still holds what Badger holds, and the redelivery is read from it.
	second := stored(t, r, sk)
	r.send(ev{name: "AddToCart", anon: "c1"})
	r.e.mu.Lock()
	r.e.fail(errors.New("test: dropped"))
	if len(r.e.mem) != 0 || len(r.e.aliasMem) != 0 {
		t.Fatalf("fail left %d states, %d aliases in memory", len(r.e.mem), len(r.e.aliasMem))
	}
	if got, _ := r.e.cache.HasGet(nil, sk); !bytes.Equal(got, second) {
		t.Fatalf("after a dropped batch the cache holds %x, Badger %x", got, second)
	}
	cache = counterValue(r.e.m.loadCache)
	r.e.mu.Unlock()
	r.send(ev{name: "AddToCart", anon: "wake"}) // the loop resubscribes after its next batch
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.e.mu.Lock()
		again := counterValue(r.e.m.loadCache) > cache
		r.e.mu.Unlock()
		if again {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dropped event was not applied again")
		}
	}
	commitNow(t, r)
	same("after the redelivery")
	if bytes.Equal(second, stored(t, r, sk)) {
		t.Fatal("the redelivered event did not change the stored state")
	}

	if _, err := r.e.Erase("shop", "a:c1"); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{sk, ak} {
		if v, ok := r.e.cache.HasGet(nil, k); ok || stored(t, r, k) != nil {
			t.Fatalf("after the erasure %q: cached %v %x, stored %x", k, ok, v, stored(t, r, k))
		}
	}
}

func TestCacheSizeConfig(t *testing.T) {
	for rules, want := range map[string]string{
		"cache_profiles: 100000\n" + cartRules: "segments.cache_profiles: replaced by segments.cache_size",
		"cache_size: 1MiB\n" + cartRules:       "segments.cache_size: must be at least 32MiB",
	} {
		cfg := parseRules(t, rules)
		if _, err := cfg.Validate(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Fatalf("%q: %v, want %q", rules[:22], err, want)
		}
	}
	cfg := parseRules(t, cartRules)
	if _, err := cfg.Validate(); err != nil || cfg.CacheSize != 64<<20 {
		t.Fatalf("default: %v %v", cfg.CacheSize, err)
	}
}

// A profile's own id has no alias key, nor has the identifier the id was
// made from (the anon id of "a:…"): its state answers for them, after a
// restart too (the filter is loaded from the state keys), for lookups that
// have nothing but the profile id (Explain, Erase, consent changes, links)
// or that identifier (a later event with it and more). A key stored by an
// earlier version still answers and is erased.
func TestOwnProfileIDHasNoAliasKey(t *testing.T) {
	r := newRig(t, cartRules)
	r.send(ev{name: "AddToCart", anon: "o1"}, ev{name: "AddToCart", anon: "o2"})
	commitNow(t, r)
	for _, id := range []string{"a:o1", "a:o2"} {
		if v := stored(t, r, aliasKey("shop", aliasProfile, id)); v != nil {
			t.Fatalf("%s: own-id alias key stored (%q)", id, v)
		}
		if v := stored(t, r, aliasKey("shop", aliasAnon, id[2:])); v != nil {
			t.Fatalf("%s: the anon id's alias key stored (%q): the profile id implies it", id, v)
		}
		if stored(t, r, stateKey("shop", id)) == nil {
			t.Fatalf("%s: state not stored", id)
		}
		r.e.mu.Lock()
		p, err := r.e.lookupAlias("shop", aliasAnon, id[2:])
		r.e.mu.Unlock()
		if err != nil || p != id {
			t.Fatalf("the anon id of %s names %q, %v", id, p, err)
		}
	}
	// What a version before 2026-12-04 wrote for o2.
	if err := kv.Update(r.store.DB(), func(txn *badger.Txn) error {
		return txn.Set(aliasKey("shop", aliasProfile, "a:o2"), []byte("a:o2"))
	}); err != nil {
		t.Fatal(err)
	}
	r.restart()
	for _, id := range []string{"a:o1", "a:o2"} {
		r.e.mu.Lock()
		st, err := r.e.resolveOnly("shop", id)
		r.e.mu.Unlock()
		if err != nil || st == nil || st.id != id {
			t.Fatalf("%s after a restart: %+v, %v", id, st, err)
		}
		x, err := r.e.Explain("shop", "profile", id)
		if err != nil || x == nil || x.Profile != id {
			t.Fatalf("Explain %s: %+v, %v", id, x, err)
		}
	}
	// Unknown ids stay unknown, without a Badger read.
	reads := counterValue(r.e.m.aliasStore)
	r.e.mu.Lock()
	st, err := r.e.resolveOnly("shop", "a:never")
	r.e.mu.Unlock()
	if err != nil || st != nil {
		t.Fatalf("a:never: %+v, %v", st, err)
	}
	if n := counterValue(r.e.m.aliasStore) - reads; n > 0 {
		t.Errorf("looking up a new id read Badger %v times", n)
	}
	for _, id := range []string{"a:o1", "a:o2"} {
		if _, err := r.e.Erase("shop", id); err != nil {
			t.Fatal(err)
		}
		if x, err := r.e.Explain("shop", "profile", id); err != nil || x != nil {
			t.Fatalf("%s after erasure: %+v, %v", id, x, err)
		}
		if stored(t, r, stateKey("shop", id)) != nil || stored(t, r, aliasKey("shop", aliasProfile, id)) != nil {
			t.Fatalf("%s: state or own-id alias left after erasure", id)
		}
	}
	// The same id again is a new profile.
	r.send(ev{name: "AddToCart", anon: "o1"})
	r.e.mu.Lock()
	st, err = r.e.resolveOnly("shop", "a:o1")
	r.e.mu.Unlock()
	if err != nil || st == nil || len(st.streams) != 1 {
		t.Fatalf("a:o1 back: %+v, %v", st, err)
	}
}

// The identifier a profile id was made from has no alias key, yet a later
// event that carries it with a stronger identifier (an anon id, whose
// profile id would win) finds that profile, after a restart too: the event
// joins it instead of starting a profile of its own.
func TestImpliedAliasFindsItsProfile(t *testing.T) {
	r := newRig(t, cartRules)
	email := sha("implied@example.com")
	emailProfile := event.ProfileID(&event.User{EmailSHA256: email})
	r.send(ev{name: "AddToCart", email: email})
	commitNow(t, r)
	if v := stored(t, r, aliasKey("shop", aliasEmail, email)); v != nil {
		t.Fatalf("the email's alias key stored (%q): the profile id implies it", v)
	}
	r.restart()
	r.send(ev{name: "AddToCart", anon: "q1", email: email})
	commitNow(t, r)
	if stored(t, r, stateKey("shop", "a:q1")) != nil {
		t.Fatal("the event with the anon id started a profile of its own")
	}
	r.e.mu.Lock()
	r.e.cache.Reset() // the stored index, not the cache
	st, err := r.e.resolveOnly("shop", emailProfile)
	anon, err2 := r.e.lookupAlias("shop", aliasAnon, "q1")
	r.e.mu.Unlock()
	if err != nil || err2 != nil || st == nil || anon != emailProfile {
		t.Fatalf("anon q1 → %q (%v); %s: %+v (%v)", anon, err2, emailProfile, st, err)
	}
	n := uint32(0)
	for _, es := range st.streams {
		for _, x := range es {
			n += x.count
		}
	}
	if n != 2 {
		t.Fatalf("%s counts %d cart events, want both: %+v", emailProfile, n, st.streams)
	}
}
