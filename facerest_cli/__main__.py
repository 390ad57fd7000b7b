from facerest_cli.cli import main

main()
