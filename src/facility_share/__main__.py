from facility_share.cli import main

main()
