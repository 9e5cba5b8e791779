// Package audit is Tagway's append-only, tamper-evident consent audit log,
// kept in Badger. Every record carries the SHA-256 of the record before it (a
// hash chain), so altering, deleting or reordering any record breaks the
// chain at that record, and Verify names it. Records are consent state
// changes, erasures, and the policy in force at start-up; privacy teams query
// them by profile and time and export them (JSONL or CSV).
//
// Erasure without breaking the chain (crypto-shredding): a record names its
// profile only by profile_ref, an HMAC-SHA256 of the profile id under a random
// key kept per profile. The ref is part of the hashed record; the profile id
// is not. Erase deletes the key, the ref → profile mapping and the profile
// index, so the records that stay (the chain needs them) can no longer be tied
// to the person, and appends a minimal erasure record.
//
// Badger key schema (one prefix byte per kind; sequence numbers big-endian so
// records scan in order):
//
//	'A' seq(8)                      → the record in its stored form (codec.go;
//	                                  with its hash, no profile id)
//	'S' site 0x00 profile           → the profile's 32-byte HMAC key
//	'R' ref                         → site 0x00 profile (resolves refs for queries)
//	'P' ref 0x00 seq(8)             → nothing (profile index)
//	'H'                             → head {seq, hash}: where the next append links
//	'K'                             → checkpoint {seq, prev}: first record kept
//	                                  after pruning and the hash it links to
//
// Retention: Prune deletes records older than a time and moves the checkpoint,
// so what remains still verifies from the checkpoint on.
//
// A *Log is safe for concurrent use; appends are serialised.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/kv"
)

// Kinds of record.
const (
	KindConsent = "consent" // a profile's consent state changed
	KindErasure = "erasure" // a profile was erased (a minimal record)
	KindPolicy  = "policy"  // the policy in force changed (written at start-up)
	// KindForwardSkip: a conversion was not delivered to a destination
	// because the profile's consent was withdrawn after it was accepted.
	KindForwardSkip = "forward_skip"
)

// Record is one audit entry. JSON field names are a contract (exports).
type Record struct {
	Seq uint64 `json:"seq"`
	// ID is the record's stable id (time-ordered hex), known before it is
	// appended: envelopes carry it as consent.audit_id.
	ID   string `json:"id,omitempty"`
	At   int64  `json:"at"` // unix milliseconds
	Kind string `json:"kind"`
	Site string `json:"site,omitempty"`
	// Profile is the profile id: given to Append, filled in by Query and
	// Scan while the profile is not erased. Never stored in the record.
	Profile string `json:"profile,omitempty"`
	// ProfileRef is HMAC-SHA256(profile key, profile id), hex: what the
	// hashed record says about the profile.
	ProfileRef   string `json:"profile_ref,omitempty"`
	Jurisdiction string `json:"jurisdiction,omitempty"`
	// Source of the signal: browser, server or admin.
	Source string `json:"source,omitempty"`
	// Data is the kind's payload: the signal strings and the decision for
	// consent, the policy for policy records.
	Data json.RawMessage `json:"data,omitempty"`
	// Prev is the hex SHA-256 of the previous record; Hash of this one
	// (computed over the record with Hash empty).
	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// genesis is Prev of the first record.
var genesis = hex.EncodeToString(make([]byte, sha256.Size))

// ErrBroken is wrapped by Verify's error; the error names the record.
var ErrBroken = errors.New("audit: chain broken")

// BrokenError says where the chain breaks.
type BrokenError struct {
	Seq    uint64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit: chain broken at record %d: %s", e.Seq, e.Reason)
}

func (e *BrokenError) Unwrap() error { return ErrBroken }

// hashOf computes a record's hash: SHA-256 over its JSON with Hash and
// Profile empty.
func hashOf(r Record) (string, error) {
	r.Hash, r.Profile = "", ""
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func recordKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = 'A'
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func indexKey(ref string, seq uint64) []byte {
	k := append([]byte("P"+ref+"\x00"), make([]byte, 8)...)
	binary.BigEndian.PutUint64(k[len(k)-8:], seq)
	return k
}

func indexPrefix(ref string) []byte { return []byte("P" + ref + "\x00") }

func secretKey(site, profile string) []byte { return []byte("S" + site + "\x00" + profile) }

func refKey(ref string) []byte { return []byte("R" + ref) }

func refOf(key []byte, site, profile string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(site + "\x00" + profile))
	return hex.EncodeToString(m.Sum(nil))
}

// profileRef returns the profile's ref, creating its key when create is set
// (else "" for a profile without one: never seen, or erased).
func (l *Log) profileRef(txn *badger.Txn, site, profile string, create bool) (string, error) {
	sk := secretKey(site, profile)
	var item *badger.Item
	err := badger.ErrKeyNotFound
	if l.secrets == nil || l.secrets.MayContain(sk) {
		item, err = txn.Get(sk)
	}
	switch {
	case err == nil:
		key, err := item.ValueCopy(nil)
		if err != nil {
			return "", err
		}
		return refOf(key, site, profile), nil
	case !errors.Is(err, badger.ErrKeyNotFound):
		return "", err
	case !create:
		return "", nil
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ref := refOf(key, site, profile)
	if l.secrets != nil {
		// Before the write: a key stored but not in the filter would be
		// taken for absent, and a second key would replace it.
		l.secrets.Add(sk)
	}
	if err := txn.Set(sk, key); err != nil {
		return "", err
	}
	return ref, txn.Set(refKey(ref), []byte(site+"\x00"+profile))
}

// resolve fills r.Profile from its ref, when the profile is not erased.
func resolve(txn *badger.Txn, r *Record) error {
	if r.ProfileRef == "" {
		return nil
	}
	item, err := txn.Get(refKey(r.ProfileRef))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			r.Profile = string(b[i+1:])
		}
		return nil
	})
}

var (
	headKey       = []byte("H")
	checkpointKey = []byte("K")
)

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Log is the audit log.
type Log struct {
	db *badger.DB
	// group commits concurrent appends in one transaction; its Exclusive
	// keeps them out of an erasure or a prune.
	group *kv.Group
	now   func() time.Time
	// secrets holds every profile key ('S') written (a Bloom filter), so a
	// new profile's first record looks for no key in Badger: that read,
	// which finds nothing only after every level, was 1.6 % of the CPU in
	// the beacons' profile (a third of an append). nil (the filter could
	// not be loaded): every lookup reads.
	secrets *kv.Filter
	// head is the chain's head as the last committed transaction left it,
	// so that an append does not read it from Badger: the head is
	// rewritten by every group of appends, so it has versions at every
	// level, and Badger's point read looks through all of them even when
	// the newest is in a memtable (3 % of the server's CPU in the beacons'
	// open-loop profile, 2026-12-06). Only appends write it, one
	// transaction at a time under the group's commit lock, which also
	// guards these fields; a failed transaction forgets it (headOK false:
	// the next append reads it). pending is the head the appends of txn
	// have made so far.
	head, pending head
	headOK        bool
	txn           *badger.Txn
}

// New opens the log on db. now may be nil (time.Now).
func New(db *badger.DB, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	l := &Log{db: db, group: kv.NewGroup(db, maxGroup), now: now}
	l.group.OnCommit(l.committed)
	if f, _, err := kv.LoadFilter(db, 1<<16, 0.01, []byte("S")); err == nil {
		l.secrets = f
	}
	return l
}

func getJSON(txn *badger.Txn, key []byte, v any) (bool, error) {
	return kv.GetIn(txn, key, func(b []byte) error { return json.Unmarshal(b, v) })
}

// Append adds records in order, linking each to the one before, in one
// transaction. It fills their Seq, At (when zero), Prev and Hash.
func (l *Log) Append(recs ...*Record) error { return l.AppendTx(nil, recs...) }

// AppendTx is Append with extra writes (a caller's own state) in the same
// transaction: both land or neither does.
//
// The chain makes appends sequential, so concurrent callers are committed
// together (group commit, kv.Group): the load test's beacon profile showed
// the server idle at ~4 k requests/s with requests queued on the log's
// lock, one Badger commit round trip each. A group that fails is retried
// one append at a time, so one caller's bad write fails only that caller.
func (l *Log) AppendTx(extra func(txn *badger.Txn) error, recs ...*Record) error {
	req := &appendReq{extra: extra, recs: recs, refs: make([]string, len(recs))}
	for i, r := range recs {
		req.refs[i] = r.ProfileRef
	}
	return l.group.Update(1, func(txn *badger.Txn) error { return l.appendIn(txn, req) })
}

// appendReq is one AppendTx's records and extra writes.
type appendReq struct {
	extra func(txn *badger.Txn) error
	recs  []*Record
	refs  []string // the records' ProfileRef as given: a failed try's must not stay
}

// maxGroup bounds the appends in one transaction (Badger limits a
// transaction's size).
const maxGroup = 128

// appendIn writes one append's extra writes and records, chained to the
// head as the transaction sees it.
func (l *Log) appendIn(txn *badger.Txn, req *appendReq) error {
	if req.extra != nil {
		if err := req.extra(txn); err != nil {
			return err
		}
	}
	h, err := l.headIn(txn)
	if err != nil {
		return fmt.Errorf("audit: reading head: %w", err)
	}
	for i, r := range req.recs {
		// A ref made by a transaction that then failed was never stored.
		r.ProfileRef = req.refs[i]
		r.Seq, r.Prev = h.Seq+1, h.Hash
		if r.At == 0 {
			r.At = l.now().UnixMilli()
		}
		if r.Profile != "" && r.ProfileRef == "" {
			ref, err := l.profileRef(txn, r.Site, r.Profile, true)
			if err != nil {
				return fmt.Errorf("audit: profile key: %w", err)
			}
			r.ProfileRef = ref
		}
		hash, err := hashOf(*r)
		if err != nil {
			return err
		}
		r.Hash = hash
		if err := txn.Set(recordKey(r.Seq), encodeRecord(make([]byte, 0, 192+len(r.Data)), r)); err != nil {
			return err
		}
		if r.ProfileRef != "" && r.Kind != KindErasure {
			if err := txn.Set(indexKey(r.ProfileRef, r.Seq), nil); err != nil {
				return err
			}
		}
		h = head{Seq: r.Seq, Hash: r.Hash}
	}
	b, _ := json.Marshal(h)
	if err := txn.Set(headKey, b); err != nil {
		return err
	}
	l.pending, l.txn = h, txn
	return nil
}

// headIn is the head an append in txn chains to: what the appends before
// it in txn made, else the last committed head, else Badger's.
func (l *Log) headIn(txn *badger.Txn) (head, error) {
	switch {
	case l.txn == txn:
		return l.pending, nil
	case l.headOK:
		return l.head, nil
	}
	h := head{Hash: genesis}
	_, err := getJSON(txn, headKey, &h)
	return h, err
}

// committed keeps the head txn's appends made if it committed (kv.Group's
// OnCommit, under its commit lock).
func (l *Log) committed(err error) {
	if err == nil && l.txn != nil {
		l.head, l.headOK = l.pending, true
	} else if err != nil {
		l.headOK = false
	}
	l.txn = nil
}

// Verify recomputes the chain from the checkpoint (or the first record) to
// the head and returns the number of records checked, or a *BrokenError for
// the first record that is altered, missing or out of order.
func (l *Log) Verify() (int, error) {
	n := 0
	err := l.db.View(func(txn *badger.Txn) error {
		cp := struct {
			Seq  uint64 `json:"seq"`
			Prev string `json:"prev"`
		}{Seq: 1, Prev: genesis}
		if _, err := getJSON(txn, checkpointKey, &cp); err != nil {
			return err
		}
		var h head
		if _, err := getJSON(txn, headKey, &h); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'A'}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		want, prev := cp.Seq, cp.Prev
		for it.Seek(recordKey(cp.Seq)); it.ValidForPrefix([]byte{'A'}); it.Next() {
			seq := binary.BigEndian.Uint64(it.Item().Key()[1:])
			if seq != want {
				return &BrokenError{Seq: want, Reason: fmt.Sprintf("record %d is missing (found %d next)", want, seq)}
			}
			var r Record
			if err := it.Item().Value(func(b []byte) error { return decodeRecord(b, &r) }); err != nil {
				return &BrokenError{Seq: seq, Reason: err.Error()}
			}
			if r.Seq != seq {
				return &BrokenError{Seq: seq, Reason: fmt.Sprintf("record says it is %d: moved", r.Seq)}
			}
			if r.Prev != prev {
				return &BrokenError{Seq: seq, Reason: "prev does not match the previous record's hash (a record before it was altered, removed or reordered)"}
			}
			hash, err := hashOf(r)
			if err != nil || hash != r.Hash {
				return &BrokenError{Seq: seq, Reason: "content does not match its hash (altered)"}
			}
			prev, want = r.Hash, want+1
			n++
		}
		if h.Seq != 0 && (want-1 != h.Seq || prev != h.Hash) {
			return &BrokenError{Seq: want, Reason: fmt.Sprintf("chain ends at %d but the head says %d (records removed from the end)", want-1, h.Seq)}
		}
		return nil
	})
	return n, err
}

// Query returns a profile's records of site with since ≤ at < until (zero
// until: no upper bound), oldest first.
func (l *Log) Query(site, profile string, since, until time.Time, fn func(*Record) error) error {
	return l.db.View(func(txn *badger.Txn) error {
		ref, err := l.profileRef(txn, site, profile, false)
		if err != nil || ref == "" {
			return err // unknown or erased: nothing to show
		}
		prefix := indexPrefix(ref)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			var r Record
			found, err := kv.GetIn(txn, recordKey(seq), func(b []byte) error { return decodeRecord(b, &r) })
			if err != nil {
				return err
			}
			if !found || !inRange(r.At, since, until) {
				continue
			}
			r.Profile = profile
			if err := fn(&r); err != nil {
				return err
			}
		}
		return nil
	})
}

// Scan calls fn for every record with since ≤ at < until, oldest first.
func (l *Log) Scan(since, until time.Time, fn func(*Record) error) error {
	return l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'A'}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r Record
			if err := it.Item().Value(func(b []byte) error { return decodeRecord(b, &r) }); err != nil {
				return err
			}
			if !inRange(r.At, since, until) {
				continue
			}
			if err := resolve(txn, &r); err != nil {
				return err
			}
			if err := fn(&r); err != nil {
				return err
			}
		}
		return nil
	})
}

// Erase makes a profile's records unlinkable: it deletes the profile's key,
// its ref mapping and its index entries, then appends one erasure record
// (kind, time, site and the now-unlinkable ref). It returns false when the
// log held nothing for the profile (nothing is appended then).
func (l *Log) Erase(site, profile string) (bool, error) {
	var ref string
	// Exclusive of appends: the store does not detect conflicts (kv.Open),
	// so an append must not interleave with the deletion.
	err := l.group.Exclusive(func() error {
		return kv.Update(l.db, func(txn *badger.Txn) error {
			var err error
			if ref, err = l.profileRef(txn, site, profile, false); err != nil || ref == "" {
				return err
			}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: indexPrefix(ref)})
			var keys [][]byte
			for it.Rewind(); it.Valid(); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
			keys = append(keys, secretKey(site, profile), refKey(ref))
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil || ref == "" {
		return false, err
	}
	return true, l.Append(&Record{Kind: KindErasure, Site: site, ProfileRef: ref})
}

func inRange(at int64, since, until time.Time) bool {
	return (since.IsZero() || at >= since.UnixMilli()) && (until.IsZero() || at < until.UnixMilli())
}

// Last returns the newest record of kind, or nil.
func (l *Log) Last(kind string) (*Record, error) {
	var last *Record
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'A'}, Reverse: true, PrefetchValues: false})
		defer it.Close()
		for it.Seek(recordKey(^uint64(0))); it.ValidForPrefix([]byte{'A'}); it.Next() {
			var r Record
			if err := it.Item().Value(func(b []byte) error { return decodeRecord(b, &r) }); err != nil {
				return err
			}
			if r.Kind == kind {
				last = &r
				return nil
			}
		}
		return nil
	})
	return last, err
}

// Prune deletes records older than before (and their index entries) and
// moves the checkpoint to the first record kept, so Verify still checks the
// rest. The newest record is always kept. It returns how many it deleted.
func (l *Log) Prune(before time.Time) (n int, err error) {
	err = l.group.Exclusive(func() error {
		n, err = l.prune(before)
		return err
	})
	return n, err
}

// prune is Prune, run exclusive of appends.
func (l *Log) prune(before time.Time) (int, error) {
	var victims []Record
	var keep *Record
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'A'}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r Record
			if err := it.Item().Value(func(b []byte) error { return decodeRecord(b, &r) }); err != nil {
				return err
			}
			if r.At >= before.UnixMilli() {
				keep = &r
				return nil
			}
			victims = append(victims, r)
		}
		return nil
	})
	if err != nil || len(victims) == 0 {
		return 0, err
	}
	if keep == nil { // keep the newest record
		last := victims[len(victims)-1]
		keep, victims = &last, victims[:len(victims)-1]
	}
	if len(victims) == 0 {
		return 0, nil
	}
	// The checkpoint moves first: a crash after it leaves extra old records,
	// which Verify skips, never a chain that starts too early.
	cp, _ := json.Marshal(struct {
		Seq  uint64 `json:"seq"`
		Prev string `json:"prev"`
	}{keep.Seq, keep.Prev})
	if err := kv.Update(l.db, func(txn *badger.Txn) error { return txn.Set(checkpointKey, cp) }); err != nil {
		return 0, err
	}
	// In chunks: a prune of a month's records must not hold up every
	// request's transactions while Badger applies it.
	wb := kv.NewChunked(l.db, 512)
	defer wb.Cancel()
	for _, r := range victims {
		if err := wb.Delete(recordKey(r.Seq)); err != nil {
			return 0, err
		}
		if r.ProfileRef != "" {
			if err := wb.Delete(indexKey(r.ProfileRef, r.Seq)); err != nil {
				return 0, err
			}
		}
	}
	return len(victims), wb.Flush()
}
