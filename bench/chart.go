package bench

import (
	"fmt"
	"html"
	"io"
	"os"
	"strings"
)

// WriteSVG draws each comparison's ratio as a bar, with a line at 1× (the
// reference) and the result's target in the label.
func WriteSVG(w io.Writer, rs []Result) error {
	var bars []Result
	for _, r := range rs {
		if r.Skipped == "" && r.Reference.Name != "" && r.Ratio > 0 {
			bars = append(bars, r)
		}
	}
	const (
		left, barH, gap, width = 260, 22, 10, 420
	)
	maxRatio := 1.0
	for _, r := range bars {
		maxRatio = max(maxRatio, r.Ratio)
	}
	maxRatio *= 1.1
	h := len(bars)*(barH+gap) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+width+300, h+12)
	fmt.Fprintf(&b, `<text x="10" y="16" font-weight="bold">keyledger ÷ reference, medians of alternating rounds</text>`+"\n")
	one := left + int(float64(width)/maxRatio)
	for i, r := range bars {
		y := 30 + i*(barH+gap)
		wbar := int(float64(width) * r.Ratio / maxRatio)
		color := "#4a7bd0"
		if r.Met != nil && !*r.Met {
			color = "#d0704a"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+15, html.EscapeString(r.Scenario))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, max(wbar, 1), barH, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%.2f× (target %s)</text>`+"\n", left+wbar+6, y+15, r.Ratio, html.EscapeString(r.Target))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="24" x2="%d" y2="%d" stroke="#333" stroke-dasharray="4 3"/>`+"\n", one, one, h-10)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">1× reference</text>`+"\n", one, h+8)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// CPUModel names the processor, from /proc/cpuinfo where there is one.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
