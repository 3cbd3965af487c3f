from harestart.cli import main

main()
