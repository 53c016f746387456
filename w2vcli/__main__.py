from w2vcli.cli import main

main()
