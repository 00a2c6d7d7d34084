from genisss_cli.cli import main

main()
