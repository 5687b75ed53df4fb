package discover

import "time"

// bucket is the token bucket of the attempts per second, on the sweep's
// own clock (time since its start).
type bucket struct {
	rate   int // 0: no limit
	tokens float64
	burst  float64
	last   time.Duration
}

func newBucket(rate int) bucket {
	b := float64(Burst(rate))
	return bucket{rate: rate, tokens: b, burst: b}
}

// allowed is how many attempts may start now (at most most).
func (b *bucket) allowed(now time.Duration, most int) int {
	if b.rate == 0 {
		return most
	}
	b.tokens = min(b.burst, b.tokens+(now-b.last).Seconds()*float64(b.rate))
	b.last = now
	return min(most, int(b.tokens))
}

// take spends a token.
func (b *bucket) take() {
	if b.rate > 0 {
		b.tokens--
	}
}

// wait is how long until the bucket holds a whole token.
func (b *bucket) wait(now time.Duration) time.Duration {
	if b.rate == 0 {
		return 0
	}
	tokens := min(b.burst, b.tokens+(now-b.last).Seconds()*float64(b.rate))
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(b.rate) * float64(time.Second))
}
