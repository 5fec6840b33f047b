// Package natsbackend is the distributed backend of netops on NATS
// JetStream: the NATS connection built from the config (Connect), the
// lock backend (Locker, a lock.Locker) on a JetStream key-value bucket, and
// the ipc backend (IPC, an ipc.Backend: queues and channels on streams; its
// design is in the documentation of IPC).
//
// # Lock design
//
// The bucket (default "netops_locks": file storage, history 1, replicas 1
// by default, LimitMarkerTTL set so that per-key TTLs work and expiries
// leave markers a watch sees) holds one key per ticket, a ticket being one
// owner's request for one lock:
//
//	<lock>.<owner>     lock name with '.' written '=' (one subject token);
//	                   owner as base64url(sha256(owner))[:22]
//
// Its value is a JSON document: owner, host, pid, command, mode, queued and
// granted times, TTL, expiry, a granted flag, and the token (below).
//
// Queue order and fencing token: the revision (stream sequence) of the
// ticket's first write. Stream sequences only grow, across restarts of the
// server too (the file store keeps the last sequence), so a ticket created
// later always comes later in the queue, and tokens of successive holders
// strictly increase. The first write cannot know its own revision; every
// later write of the ticket carries it in the value.
//
// Every decision is a compare-and-swap write; nothing is read-then-written
// without a revision check:
//
//   - queue: kv.Create of the ticket key with a per-key TTL (only if
//     absent). If the key exists the owner already holds or waits for the
//     lock: a held ticket is returned again (reentrant, same token, lease
//     renewed), a waiting one is waited on, another mode is ErrInvalid.
//   - grant rule, the same as the local backend's: a ticket may hold the
//     lock when every earlier live ticket of the lock is shared and it is
//     shared itself, or when there is no earlier live ticket at all. Earlier
//     tickets can only disappear (new ones come later), so once a ticket
//     may hold the lock it may for good: the rule is evaluated on any
//     consistent view of the bucket that includes the ticket itself.
//   - grant: the waiter itself rewrites its ticket with granted set, by a
//     publish that expects the ticket's last revision and carries a fresh
//     TTL (Nats-Expected-Last-Subject-Sequence + Nats-TTL).
//   - renew: the same revision-checked publish with a fresh TTL; a ticket
//     gone (released, expired: its revision is no longer the last) or
//     replaced (another token) means lock.ErrLost.
//   - release, timeout, cancellation: a purge of the key that expects its
//     last revision; the purge marker itself expires after 1 s.
//
// Waiting: after queueing, one direct read (JetStream direct get,
// multi_last over "<lock>.*", one consistent snapshot of the stream) decides
// the uncontended case. It counts only if it shows the ticket itself (on a
// replicated bucket a lagging follower may answer; a view that has the
// ticket has every earlier write). Otherwise the waiter watches
// "<lock>.*" (kv.Watch, an ordered consumer: no polling) and applies the
// rule on each change. While it waits it renews its own ticket every TTL/3
// and then merges a fresh direct read into its view, so a deletion missed
// by the watch (a reconnect after the marker expired) still wakes it.
//
// Crashes: a holder or waiter that stops renewing loses its ticket when the
// per-key TTL runs out: the server removes the message and leaves a marker
// (LimitMarkerTTL), the watches of the waiters see it and the next ticket
// is granted, about TTL + 0.25 s after the last renewal. There is no
// process liveness across hosts: Request.Session has no effect here.
//
// Status reads all tickets with one direct read (a watch when there are
// more than the server returns at once); holders are the tickets marked
// granted, waiters the others in queue order. Cleanup removes tickets past
// their expiry (normally the server did already) and unreadable entries,
// and waiting tickets of dead processes on this host.
//
// Servers before nats-server 2.11 have no per-message TTL: NewLocker
// refuses them with ErrUnsupported ("NATS server 2.10.x at URL does not
// support per-key TTL (needs nats-server >= 2.11)"), as it does servers
// without JetStream.
package natsbackend
