package bench

import (
	"encoding/json"
	"fmt"
)

// IperfResult is what the harness takes from iperf3 -J.
type IperfResult struct {
	BitsPerSecond float64 // received, as the server counted
	Bytes         float64 // received
	Seconds       float64
	Retransmits   int
	Streams       int
	// StreamBytes are the bytes each stream's receiver counted.
	StreamBytes []float64
}

type iperfJSON struct {
	Start struct {
		TestStart struct {
			NumStreams int `json:"num_streams"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		Streams []struct {
			Receiver struct {
				Bytes float64 `json:"bytes"`
			} `json:"receiver"`
		} `json:"streams"`
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// ParseIperf3 parses the JSON report of an iperf3 client (-J) of a TCP
// test and returns the receiver's figures, which exclude data still in
// flight when the sender stopped.
func ParseIperf3(b []byte) (IperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 json: %w", err)
	}
	if j.Error != "" {
		return IperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	r := j.End.SumReceived
	if r.Seconds <= 0 || r.Bytes <= 0 {
		return IperfResult{}, fmt.Errorf("iperf3 json: no end.sum_received figures")
	}
	res := IperfResult{BitsPerSecond: r.BitsPerSecond, Bytes: r.Bytes, Seconds: r.Seconds,
		Retransmits: j.End.SumSent.Retransmits, Streams: j.Start.TestStart.NumStreams}
	for _, st := range j.End.Streams {
		res.StreamBytes = append(res.StreamBytes, st.Receiver.Bytes)
	}
	return res, nil
}
