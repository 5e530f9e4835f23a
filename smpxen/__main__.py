from smpxen.cli import main

main()
