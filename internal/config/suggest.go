package config

import "strings"

// suggest returns the candidate closest to name, or "" when none is close
// enough to be a likely typo.
func suggest(name string, candidates []string) string {
	norm := func(s string) string {
		return strings.ToLower(strings.ReplaceAll(s, "-", "_"))
	}
	n := norm(name)
	if n == "" {
		return ""
	}
	for _, c := range candidates {
		if norm(c) == n {
			return c
		}
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		d := levenshtein(n, norm(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := max(1, min(3, len([]rune(n))/3))
	if bestDist >= 0 && bestDist <= limit {
		return best
	}
	if len(n) >= 4 {
		for _, c := range candidates {
			if strings.HasPrefix(norm(c), n) {
				return c
			}
		}
	}
	return ""
}

// levenshtein returns the optimal string alignment distance between a and
// b: insertions, deletions, substitutions and adjacent transpositions.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	pprev := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], pprev[j-2]+1)
			}
		}
		pprev, prev, cur = prev, cur, pprev
	}
	return prev[len(rb)]
}

// oneOf formats allowed values for messages: "a, b or c".
func oneOf(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}
