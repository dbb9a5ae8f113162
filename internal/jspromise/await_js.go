//go:build js && wasm

package jspromise

import (
	"errors"
	"syscall/js"
	"time"
)

// Await blocks the calling goroutine (never the event loop, never a JS
// callback) until p settles, and returns its value or why it was rejected.
func Await(p js.Value) (js.Value, error) {
	v, _, err := AwaitAt(p)
	return v, err
}

// AwaitAt is Await, and also says when p was fulfilled: taken in the
// promise's callback, before the waiting goroutine runs again, which on a
// busy page can be milliseconds later.
func AwaitAt(p js.Value) (js.Value, time.Time, error) {
	type result struct {
		v   js.Value
		at  time.Time
		err error
	}
	ch := make(chan result, 1)
	ok := js.FuncOf(func(_ js.Value, a []js.Value) any {
		v := js.Undefined()
		if len(a) > 0 {
			v = a[0]
		}
		ch <- result{v: v, at: time.Now()}
		return nil
	})
	fail := js.FuncOf(func(_ js.Value, a []js.Value) any {
		msg := "promise rejected"
		if len(a) > 0 && a[0].Truthy() {
			msg = a[0].Call("toString").String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer ok.Release()
	defer fail.Release()
	p.Call("then", ok, fail)
	r := <-ch
	return r.v, r.at, r.err
}
