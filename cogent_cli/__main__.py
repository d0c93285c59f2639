from cogent_cli.cli import main

main()
