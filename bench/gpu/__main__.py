from bench.gpu.harness import main

main()
