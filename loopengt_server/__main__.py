from loopengt_server.cli import main

main()
