from gradfaith_tui.cli import main

main()
