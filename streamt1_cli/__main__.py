from streamt1_cli.launch import main

main()
