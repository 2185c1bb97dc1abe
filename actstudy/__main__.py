from actstudy.cli import main

main()
