// Package bench is keyledger's measuring instrument (`keyledger bench`): each
// scenario measures keyledger against a reference in the same run,
// alternating the two round by round so that a noisy machine slows both
// alike, and reports medians and their ratio.
package bench
