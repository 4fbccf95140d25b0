package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"
)

const benchChunks = 10000

var words = []string{" the", " confidential", " proxy", " relays", " tokens", ",", " quickly", ".", " Attestation", " succeeded"}

// openAIStream builds a realistic chat completion stream: a role chunk,
// content chunks of 250-350 bytes, a finish chunk with usage, [DONE].
func openAIStream(n int) []byte {
	var b bytes.Buffer
	head := `{"id":"chatcmpl-9f3c1a7e2b4d4c0e8a6b5d3f2e1c0b9a","object":"chat.completion.chunk","created":1767225600,"model":"gpt-oss-120b","system_fingerprint":"fp_7d1c2e3f",`
	fmt.Fprintf(&b, "data: %s\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n", head)
	for i := range n - 2 {
		content := words[i%len(words)]
		for range i % 7 {
			content += words[(i*3)%len(words)]
		}
		fmt.Fprintf(&b, "data: %s\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n", head, content)
	}
	fmt.Fprintf(&b, "data: %s\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", head, n, n+42)
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}

// anthropicStream builds a /v1/messages-style stream with event lines and
// CRLF line endings.
func anthropicStream(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":%q}}\r\n\r\n", words[i%len(words)]+words[(i+3)%len(words)])
	}
	return b.Bytes()
}

func benchReader(b *testing.B, stream []byte) {
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	src := bytes.NewReader(stream)
	r := NewReader(src, 0)
	events := 0
	for b.Loop() {
		src.Reset(stream)
		r.Reset(src)
		for {
			if _, err := r.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
			events++
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkReader(b *testing.B) {
	b.Run("openai", func(b *testing.B) { benchReader(b, openAIStream(benchChunks)) })
	b.Run("anthropic-crlf", func(b *testing.B) { benchReader(b, anthropicStream(benchChunks)) })
	b.Run("openai-fresh-reader", func(b *testing.B) {
		stream := openAIStream(benchChunks)
		b.SetBytes(int64(len(stream)))
		b.ReportAllocs()
		for b.Loop() {
			r := NewReader(bytes.NewReader(stream), 0)
			for {
				if _, err := r.Next(); err != nil {
					break
				}
			}
		}
		b.ReportMetric(float64(benchChunks)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkScannerBaseline splits the same stream into lines with
// bufio.Scanner, the upstream proxy's approach, as a baseline.
func BenchmarkScannerBaseline(b *testing.B) {
	stream := openAIStream(benchChunks)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	src := bytes.NewReader(stream)
	lines := 0
	for b.Loop() {
		src.Reset(stream)
		s := bufio.NewScanner(src)
		s.Buffer(make([]byte, 64<<10), 8<<20)
		for s.Scan() {
			lines++
		}
	}
	b.ReportMetric(float64(lines)/2/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkWriter(b *testing.B) {
	stream := openAIStream(benchChunks)
	var datas [][]byte
	r := NewReader(bytes.NewReader(stream), 0)
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		datas = append(datas, bytes.Clone(e.Data))
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	w := NewWriter(bufio.NewWriterSize(io.Discard, 8<<10))
	for b.Loop() {
		for _, d := range datas {
			if err := w.WriteData(d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(datas))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRelay reads and re-frames every event, as the proxy does (minus
// decryption).
func BenchmarkRelay(b *testing.B) {
	stream := openAIStream(benchChunks)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	src := bytes.NewReader(stream)
	r := NewReader(src, 0)
	w := NewWriter(bufio.NewWriterSize(io.Discard, 8<<10))
	for b.Loop() {
		src.Reset(stream)
		r.Reset(src)
		for {
			e, err := r.Next()
			if err != nil {
				break
			}
			if err := w.WriteEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(benchChunks)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
