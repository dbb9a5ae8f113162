package loadgen

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLoopbackWrite measures the floor under any tracker's responses
// per CPU-second on this machine: the CPU one write of a small message to
// a loopback TCP socket costs the writing thread. On loopback the kernel
// delivers the bytes to the receiving socket and wakes its reader inside
// the sender's write, so this is the least a tracker that sends each
// response with a write of its own pays per response, whatever it does in
// user space. Readers in the same process drain the sockets; the figure
// is the writer's own thread CPU time (RUSAGE_THREAD), not wall time.
//
//	go test -run '^$' -bench LoopbackWrite -count 3 ./loadgen
func BenchmarkLoopbackWrite(b *testing.B) {
	for _, conns := range []int{10, 1000} {
		for _, size := range []int{150, 900} {
			b.Run(fmt.Sprintf("conns=%d/bytes=%d", conns, size), func(b *testing.B) {
				benchLoopbackWrite(b, conns, size)
			})
		}
	}
}

func benchLoopbackWrite(b *testing.B, conns, size int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	out := make([]net.Conn, conns)
	for i := range out {
		if out[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
		defer out[i].Close()
	}
	msg := make([]byte, size)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	cpu0 := threadCPU()
	for i := 0; i < b.N; i++ {
		if _, err := out[i%conns].Write(msg); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			runtime.Gosched() // let the readers drain, as a busy server would
		}
	}
	cpu := threadCPU() - cpu0
	b.StopTimer()
	perWrite := float64(cpu.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perWrite, "cpu-ns/write")
	b.ReportMetric(1e9/perWrite, "writes/cpu-s")
}

// threadCPU is the calling thread's user and system time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
