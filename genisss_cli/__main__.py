from genisss_cli.entry import main

main()
