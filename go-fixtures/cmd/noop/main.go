// Command noop exits at once: the benchmark's floor for spawning a static binary.
package main

func main() {}
