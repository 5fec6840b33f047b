// Package socket is the TCP side of netops ipc: a listener that cuts what
// peers send into frames and hands each frame to a Handler (a queue, a
// channel, a program), and a client (Dial, Exchange) that sends data like
// nc and optionally reads the reply.
//
// # Framing
//
// Lines (default): a frame is a line ended by "\n"; "\r\n" works too (the
// "\r" is dropped). A last line without "\n" before the peer half-closes is
// a frame as well. Blank lines are skipped. Any byte but "\n" may appear in
// a line.
//
// Length ("--framing len"): each frame is a 4-byte big-endian unsigned
// length N followed by N bytes of data; zero-length frames are skipped.
// Replies use the same framing: with len framing every reply is one frame
// (possibly empty), with line framing a reply is written as is, plus "\n"
// if it does not end with one (an empty reply writes nothing).
//
// A frame over the limit (default 1 MiB) ends the connection: the peer is
// sent one line (or frame) "netops ipc listen: ..." saying why, as it is
// when the listener is at its connection limit, a connection stays idle
// past the timeout, or the handler fails (not merely rejects the frame).
//
// # Lifecycle
//
// The listener serves each connection in its own goroutine and handles its
// frames in order; it closes a connection when the peer has closed its
// sending side and every frame received has been handled, so a client that
// waits for the close knows its frames were forwarded. On shutdown (the
// context of Serve is done) it stops accepting, handles the frames already
// received, and waits for running handlers up to a grace period.
//
// Listeners bind to loopback unless explicitly allowed otherwise.
package socket
