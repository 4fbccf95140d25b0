package fastserve

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// peerClosed blocks until the peer of c has closed or reset the
// connection (true) or done is closed (false). It never consumes bytes:
// it peeks, and the runtime's poller wakes it when the socket turns
// readable. If readable data is waiting (a pipelined request, a TLS
// close_notify) the socket stays readable, so it falls back to checking
// for the peer's FIN (POLLRDHUP) a few times a second.
func peerClosed(c net.Conn, done <-chan struct{}) bool {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return false
	}
	var closed, pending bool
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR):
			return false // nothing yet: wait for readability
		case rerr != nil || n == 0:
			closed = true // reset, or EOF
		default:
			pending = true
		}
		return true
	})
	if err != nil || closed {
		return closed
	}
	if !pending {
		return false
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if rdhup(rc) {
			return true
		}
		select {
		case <-done:
			return false
		case <-t.C:
		}
	}
}

// rdhup reports whether the peer has shut down its side (FIN or reset).
func rdhup(rc syscall.RawConn) bool {
	var hup bool
	_ = rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			hup = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return hup
}
