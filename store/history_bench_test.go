package store

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// BenchmarkApplyPuts applies batches of 64 puts of 256-byte values over
// 10,000 keys, with and without the change history.
func BenchmarkApplyPuts(b *testing.B) {
	for _, keep := range []uint64{0, 100_000} {
		b.Run(fmt.Sprintf("history=%d", keep), func(b *testing.B) {
			s := openHistory(b, keep, 0)
			val := make([]byte, 256)
			index := uint64(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				logs := make([]*raft.Log, 64)
				for j := range logs {
					index++
					c := Command{Op: OpPut, Key: []byte(fmt.Sprintf("bench/%05d", (i*64+j)%10000)), Value: val, Cond: kv.Condition{}}
					logs[j] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode(nil)}
				}
				s.ApplyBatch(logs)
			}
		})
	}
}
