from streamt1_cli.app import main

main()
